// Node-only: `--model org/name` — the files SDXL-Turbo needs, downloaded from the Hugging Face
// Hub into its standard cache, in huggingface_hub's layout so either tool reuses the other's
// downloads: models--org--name/blobs/<etag>, snapshots/<commit>/<path> (a relative symlink to
// the blob), refs/<revision> (the commit). Only model_index.json, the configs, the tokenizer
// files and one weight variant per model are fetched: never the .bin/.onnx copies, the other
// variant or the single-file checkpoints at the repo root (`--model org/name/FILE.safetensors`
// fetches just that file: downloadHubFile). A cached snapshot that has every needed file is used
// without any request.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { NetworkError, UsageError, usage } from '../errors.js';
import { isRepoId, MODEL_COMPONENTS, type ModelComponent, TOKENIZER_FILES, weightCandidates } from '../io/model-folder.js';
import { isTransientStatus, NETWORK } from '../io/url-reader.js';
import type { WeightVariant } from '../pipeline/options.js';

/** A progress event of the library's stream (stage 'download'), with the file's own bytes. */
export interface DownloadProgress {
  readonly stage: 'download';
  /** The file in flight: its path in the repo, e.g. 'unet/diffusion_pytorch_model.fp16.safetensors'. */
  readonly file: string;
  /** Bytes of this file received (a resumed file starts at what was there) and its size. */
  readonly bytes: number;
  readonly size: number;
  /** Bytes of every file this call downloads: received, and in all (known once the files are
   *  listed, before the weights download). */
  readonly done: number;
  readonly total: number;
}

export interface DownloadOptions {
  /** Per model: default fp16 where the repo has it, else fp32. */
  readonly variant?: WeightVariant;
  /** Called as each file downloads (not for files already cached). */
  readonly onDownload?: (e: DownloadProgress) => void;
  /** Default $HF_ENDPOINT, else https://huggingface.co. */
  readonly endpoint?: string;
  /** Default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  readonly cacheDir?: string;
  /** A branch, tag or commit sha (default main). */
  readonly revision?: string;
  /** Cancels the download: the call rejects with `signal.reason` (the partial file stays, to resume). */
  readonly signal?: AbortSignal;
}

const COMMIT = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;

type Model = ModelComponent;
const MODELS = MODEL_COMPONENTS;
/** Every file besides the weights; model_index.json first (its HEAD names the commit). */
const CONFIG_FILES = [
  'model_index.json',
  'scheduler/scheduler_config.json',
  ...MODELS.map((m) => `${m}/config.json`),
  ...['tokenizer', 'tokenizer_2'].flatMap((t) => TOKENIZER_FILES.map((f) => `${t}/${f}`)),
];

// The environment as huggingface_hub reads it; an empty variable counts as unset.
const env = (name: string): string | undefined => process.env[name] || undefined;
const hfHome = (): string => env('HF_HOME') ?? join(env('XDG_CACHE_HOME') ?? join(homedir(), '.cache'), 'huggingface');
export const isOffline = (): boolean => ['1', 'ON', 'YES', 'TRUE'].includes(env('HF_HUB_OFFLINE')?.toUpperCase() ?? '');

/** Where huggingface_hub keeps its downloads. */
function hubCacheDir(): string {
  return env('HF_HUB_CACHE') ?? env('HUGGINGFACE_HUB_CACHE') ?? join(hfHome(), 'hub');
}

/** $HF_TOKEN, else the token `huggingface-cli login` saved. */
async function hubToken(): Promise<string | undefined> {
  const token = env('HF_TOKEN') ?? (await readFile(env('HF_TOKEN_PATH') ?? join(hfHome(), 'token'), 'utf8').catch(() => ''));
  return token.trim() || undefined;
}

/**
 * The local folder of `repoId` at `revision` (a diffusers pipeline: open it with nodeModelFs),
 * downloading whatever the cache lacks. User-caused failures (unknown repo or file, gated repo
 * without a token, HF_HUB_OFFLINE with files missing) throw UsageError.
 */
export async function downloadSnapshot(repoId: string, options: DownloadOptions = {}): Promise<string> {
  return download(repoId, options, (snapshot) => firstMissing(snapshot, options.variant), (hub, revision) => hub.snapshot(revision, options.variant));
}

/**
 * The local path of one file of `repoId` at `revision` (a single-file checkpoint, e.g.
 * 'sd_xl_turbo_1.0_fp16.safetensors'), downloaded into the same cache if absent; failures as
 * downloadSnapshot's.
 */
export async function downloadHubFile(repoId: string, path: string, options: DownloadOptions = {}): Promise<string> {
  if (!path.split('/').every((s) => /^[\w.-]+$/.test(s) && !/^\.+$/.test(s))) usage(`${repoId}: invalid file path "${path}"`);
  const snapshot = await download(repoId, options, async (s) => ((await isFile(join(s, path))) ? null : path), (hub, revision) => hub.file(path, revision));
  return join(snapshot, path);
}

/** The snapshot folder of `repoId` at the revision, once `missing` finds nothing lacking there
 *  (`fetch` downloads what is and returns the commit). */
async function download(
  repoId: string,
  options: DownloadOptions,
  missing: (snapshot: string) => Promise<string | null>,
  fetch: (hub: HubDownload, revision: string) => Promise<string>,
): Promise<string> {
  if (!isRepoId(repoId)) usage(`${repoId}: not a Hugging Face repo id (org/name)`);
  const revision = options.revision ?? 'main';
  if (!/^[\w.-]+(\/[\w.-]+)*$/.test(revision) || revision.split('/').some((s) => /^\.+$/.test(s))) {
    usage(`${repoId}: invalid revision "${revision}"`);
  }
  const repoDir = join(options.cacheDir ?? hubCacheDir(), `models--${repoId.replace('/', '--')}`);
  const ref = join(repoDir, 'refs', revision);
  const commit = COMMIT.test(revision) ? revision : await readFile(ref, 'utf8').then((s) => s.trim(), () => null);
  if (commit !== null) {
    const snapshot = join(repoDir, 'snapshots', commit);
    const lacking = await missing(snapshot);
    if (lacking === null) return snapshot;
    if (isOffline()) usage(`HF_HUB_OFFLINE is set and the cached ${repoId} (${snapshot}) lacks ${lacking}`);
  } else if (isOffline()) {
    usage(`HF_HUB_OFFLINE is set and ${repoId} (revision ${revision}) is not in the cache (no ${ref})`);
  }
  const endpoint = (options.endpoint ?? env('HF_ENDPOINT') ?? 'https://huggingface.co').replace(/\/+$/, '');
  const hub = new HubDownload(repoId, repoDir, endpoint, await hubToken(), options.onDownload, options.signal);
  const downloaded = await fetch(hub, revision);
  // Written last, so a ref always names a complete snapshot.
  if (!COMMIT.test(revision)) {
    await mkdir(dirname(ref), { recursive: true });
    await writeFile(ref, downloaded);
  }
  return join(repoDir, 'snapshots', downloaded);
}

const isFile = (path: string): Promise<boolean> => stat(path).then((s) => s.isFile(), () => false);

/** What the snapshot lacks for this variant (a file, or a model's weights), null if complete. */
async function firstMissing(snapshot: string, variant: WeightVariant | undefined): Promise<string | null> {
  for (const path of CONFIG_FILES) if (!(await isFile(join(snapshot, path)))) return path;
  for (const model of MODELS) {
    if (!(await hasWeights(snapshot, model, variant))) return `${model} weights (${weightCandidates(model, variant).join(' or ')})`;
  }
  return null;
}

async function hasWeights(snapshot: string, model: Model, variant: WeightVariant | undefined): Promise<boolean> {
  for (const path of weightCandidates(model, variant)) {
    if (!(await isFile(join(snapshot, path)))) continue;
    if (!path.endsWith('.json')) return true;
    const shards = shardFiles(await readFile(join(snapshot, path), 'utf8'), join(snapshot, path));
    if ((await Promise.all(shards.map((f) => isFile(join(snapshot, model, f))))).every(Boolean)) return true;
  }
  return false;
}

/** The shard files a `*.safetensors.index*.json` names (its weight_map's values). */
function shardFiles(text: string, where: string): string[] {
  let map: unknown;
  try {
    map = (JSON.parse(text) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new Error(`${where}: invalid JSON (${(e as Error).message})`);
  }
  const files = typeof map === 'object' && map !== null ? [...new Set(Object.values(map))] : [];
  // Shards sit beside their index: a name with a path in it is not one we will write.
  if (files.length === 0 || !files.every((f) => typeof f === 'string' && /^[\w.-]+$/.test(f) && !/^\.+$/.test(f))) {
    throw new Error(`${where}: not a shard index (weight_map must map tensor names to file names beside it)`);
  }
  return files as string[];
}

/** What a HEAD on the hub says about one file. */
interface FileMeta {
  readonly commit: string;
  /** The blob's name: the sha256 for LFS files, else the git blob id. */
  readonly etag: string;
  readonly size: number;
  readonly lfs: boolean;
  /** Where the bytes are: the CDN the hub redirects to, or the resolve URL itself. */
  readonly location: string;
}

/** The bytes received are not the file the hub announced; the partial file is worthless. */
class CorruptDownload extends Error {}

class HubDownload {
  constructor(
    private readonly repoId: string,
    private readonly repoDir: string,
    private readonly endpoint: string,
    private readonly token: string | undefined,
    private readonly onDownload: ((e: DownloadProgress) => void) | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** Bytes downloaded by this call, and of every blob it is to download. */
  private done = 0;
  private total = 0;

  /** Downloads what snapshots/<commit> lacks; returns the commit. */
  async snapshot(revision: string, variant: WeightVariant | undefined): Promise<string> {
    // Every file is then asked of that commit, so a push meanwhile cannot mix two.
    const { commit } = (await this.head('model_index.json', revision)) ?? this.notFound('model_index.json', revision);
    const snapshot = join(this.repoDir, 'snapshots', commit);
    // Listed first, so the progress knows the total before the weights download.
    const wanted: Array<{ path: string; meta: FileMeta }> = [];
    for (const path of CONFIG_FILES) {
      if (!(await isFile(join(snapshot, path)))) wanted.push({ path, meta: (await this.head(path, commit)) ?? this.notFound(path, commit) });
    }
    for (const model of MODELS) {
      if (!(await hasWeights(snapshot, model, variant))) wanted.push(...(await this.weightFiles(snapshot, model, variant, commit)));
    }
    // Counted once per blob: files with the same content (tokenizer_2's vocab) share one.
    const blobs = new Map(wanted.map(({ meta }) => [meta.etag, meta]));
    for (const meta of blobs.values()) if (!(await isFile(this.blob(meta)))) this.total += meta.size;
    for (const { path, meta } of wanted) await this.fetchInto(snapshot, path, meta);
    return commit;
  }

  /** Downloads one file into snapshots/<commit> unless there; returns the commit. */
  async file(path: string, revision: string): Promise<string> {
    const meta = (await this.head(path, revision)) ?? this.notFound(path, revision, '');
    if (!(await isFile(this.blob(meta)))) this.total += meta.size;
    await this.fetchInto(join(this.repoDir, 'snapshots', meta.commit), path, meta);
    return meta.commit;
  }

  /** The weight files a snapshot lacks for `model`; a shard index is fetched at once (its shards
   *  are the files). */
  private async weightFiles(snapshot: string, model: Model, variant: WeightVariant | undefined, commit: string): Promise<Array<{ path: string; meta: FileMeta }>> {
    const tried = weightCandidates(model, variant);
    for (const path of tried) {
      const meta = await this.head(path, commit);
      if (!meta) continue;
      if (!path.endsWith('.json')) return (await isFile(join(snapshot, path))) ? [] : [{ path, meta }];
      if (!(await isFile(join(snapshot, path)))) {
        if (!(await isFile(this.blob(meta)))) this.total += meta.size;
        await this.fetchInto(snapshot, path, meta);
      }
      const files: Array<{ path: string; meta: FileMeta }> = [];
      for (const shard of shardFiles(await readFile(join(snapshot, path), 'utf8'), `${this.repoId}/${path}`)) {
        const file = `${model}/${shard}`;
        if (!(await isFile(join(snapshot, file)))) files.push({ path: file, meta: (await this.head(file, commit)) ?? this.notFound(file, commit) });
      }
      return files;
    }
    usage(`${this.repoId}: no ${variant ?? 'fp16 or fp32'} safetensors weights for ${model} on ${this.endpoint} (tried ${tried.join(', ')})`);
  }

  private url(revision: string, path: string): string {
    return `${this.endpoint}/${this.repoId}/resolve/${encodeURIComponent(revision)}/${path.split('/').map(encodeURIComponent).join('/')}`;
  }

  private async request(url: string, init: Omit<RequestInit, 'headers'> & { headers?: Record<string, string> } = {}): Promise<Response> {
    // identity: the sizes in the headers are then the bytes the body carries.
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity', ...init.headers };
    // The token is for the hub; a signed CDN URL elsewhere must not receive it.
    if (this.token && new URL(url).origin === new URL(this.endpoint).origin) headers.Authorization = `Bearer ${this.token}`;
    // A server that accepts the connection but never answers is abandoned (body stalls: body()).
    const waiting = new AbortController();
    const timer = setTimeout(() => waiting.abort(new NetworkError(`stalled: no answer for ${NETWORK.idleTimeoutMs / 1000} s`)), NETWORK.idleTimeoutMs);
    const signal = this.signal ? AbortSignal.any([this.signal, waiting.signal]) : waiting.signal;
    try {
      return await fetch(url, { ...init, headers, signal });
    } catch (e) {
      this.signal?.throwIfAborted();
      const why = waiting.signal.aborted ? (waiting.signal.reason as Error).message : reason(e);
      throw new NetworkError(`${this.repoId}: cannot reach ${new URL(url).origin} (${why})`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
  }

  /** A HEAD (idempotent), tried again with backoff while the connection fails or the hub answers
   *  5xx, 408 or 429, NETWORK.attempts times in all. */
  private async headRequest(url: string): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      const res = await this.request(url, { method: 'HEAD', redirect: 'manual' }).catch((e: unknown) => {
        if (!(e instanceof NetworkError) || attempt >= NETWORK.attempts) throw e;
        return null;
      });
      if (res && (!isTransientStatus(res.status) || attempt >= NETWORK.attempts)) return res;
      await new Promise((r) => setTimeout(r, NETWORK.backoffMs * 2 ** (attempt - 1)));
    }
  }

  /**
   * The file's metadata from a HEAD that does not follow the redirect to the CDN (the hub's
   * headers are on the redirect, as huggingface_hub reads them); null if the repo and revision
   * exist but the file does not.
   */
  private async head(path: string, revision: string): Promise<FileMeta | null> {
    let url = this.url(revision, path);
    let res = await this.headRequest(url);
    // A redirect that stays on the hub (a renamed repo) is followed; one to another host (the
    // CDN) is not: its response has none of the hub's headers.
    for (let hops = 0; isRedirect(res) && new URL(res.headers.get('location')!, url).origin === new URL(url).origin && hops < 5; hops++) {
      url = new URL(res.headers.get('location')!, url).href;
      res = await this.headRequest(url);
    }
    if (res.status >= 400) {
      const code = res.headers.get('x-error-code');
      if (res.status === 404 && code !== 'RepoNotFound' && code !== 'RevisionNotFound') return null;
      this.fail(res, url, revision);
    }
    const commit = res.headers.get('x-repo-commit');
    const linkedEtag = res.headers.get('x-linked-etag');
    const etag = (linkedEtag ?? res.headers.get('etag'))?.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
    const size = res.headers.get('x-linked-size') ?? res.headers.get('content-length');
    if (!commit || !COMMIT.test(commit) || !etag || !/^[\w-]+$/.test(etag) || size === null || !/^\d+$/.test(size)) {
      throw new Error(
        `${url}: not a Hugging Face hub answer (HTTP ${res.status}, X-Repo-Commit ${commit}, ETag ${etag}, size ${size}); check HF_ENDPOINT and any proxy`,
      );
    }
    const location = isRedirect(res) ? new URL(res.headers.get('location')!, url).href : url;
    return { commit, etag, size: Number(size), lfs: linkedEtag !== null, location };
  }

  private fail(res: Response, url: string, revision: string): never {
    const code = res.headers.get('x-error-code');
    const repo = `${this.repoId} on ${this.endpoint}`;
    if (code === 'GatedRepo') {
      const which = this.token ? ' (the current one has no access)' : '';
      usage(`${repo} is gated: accept its conditions at ${this.endpoint}/${this.repoId}, then set HF_TOKEN to a token of that account${which}`);
    }
    if (res.status === 401 && this.token && code !== 'RepoNotFound') usage(`${repo}: HF_TOKEN was rejected (HTTP 401)`);
    if (res.status === 401 || res.status === 403 || code === 'RepoNotFound') {
      // The hub answers an unknown repo and a private one alike.
      usage(`${repo}: repository not found or not accessible (HTTP ${res.status})${this.token ? '' : '; if it is private or gated, set HF_TOKEN'}`);
    }
    if (code === 'RevisionNotFound') usage(`${repo}: no revision "${revision}"`);
    const status = `${url}: HTTP ${res.status} ${res.statusText}`;
    if (isTransientStatus(res.status)) throw new NetworkError(`${status} after ${NETWORK.attempts} attempts`);
    throw new UsageError(status);
  }

  private notFound(path: string, revision: string, hint = '; not a diffusers SDXL pipeline?'): never {
    usage(`${this.repoId} on ${this.endpoint}: ${path} not found (revision ${revision})${hint}`);
  }

  /** Puts the file in the snapshot, downloading its blob unless another snapshot has it already. */
  private blob(meta: FileMeta): string {
    return join(this.repoDir, 'blobs', meta.etag);
  }

  private async fetchInto(snapshot: string, path: string, meta: FileMeta): Promise<void> {
    const blob = this.blob(meta);
    if (!(await isFile(blob))) {
      await this.fetchBlob(path, meta, blob);
      this.done += meta.size;
    }
    const target = join(snapshot, path);
    await mkdir(dirname(target), { recursive: true });
    await rm(target, { force: true }); // a dangling link left by a blob since removed
    // Relative like huggingface_hub's, so the cache can move; a copy where symlinks are refused
    // (Windows without developer mode).
    await symlink(relative(dirname(target), blob), target).catch(() => copyFile(blob, target));
  }

  /** Downloads into <blob>.incomplete (resuming it if there), checks it, renames it to the blob. */
  private async fetchBlob(path: string, meta: FileMeta, blob: string): Promise<void> {
    const partial = `${blob}.incomplete`;
    await mkdir(dirname(blob), { recursive: true });
    try {
      const hash = await this.receive(path, meta, partial);
      const sha = hash?.digest('hex');
      if (sha !== undefined && sha !== meta.etag) {
        throw new CorruptDownload(`${this.repoId}/${path}: downloaded sha256 ${sha}, expected ${meta.etag}; the download was discarded, run again`);
      }
    } catch (e) {
      if (e instanceof CorruptDownload) await rm(partial, { force: true });
      throw e;
    }
    await rename(partial, blob);
  }

  /** Appends the missing bytes to `partial` (Range on a resume, retrying broken connections);
   *  returns the sha256 of the whole file for LFS files (whose etag it is), else null. */
  private async receive(path: string, meta: FileMeta, partial: string): Promise<Hash | null> {
    const newHash = (): Hash | null => (meta.lfs && SHA256.test(meta.etag) ? createHash('sha256') : null);
    let hash = newHash();
    let written = (await stat(partial).catch(() => null))?.size ?? 0;
    if (written > meta.size) written = 0; // not a prefix of this file: start over
    if (hash && written > 0) for await (const chunk of createReadStream(partial, { end: written - 1 })) hash.update(chunk as Buffer);
    const file = await open(partial, 'a');
    try {
      if (written === 0) await file.truncate(0);
      const progress = (): void => this.onDownload?.({ stage: 'download', file: path, bytes: written, size: meta.size, done: this.done + written, total: this.total });
      progress();
      for (let failures = 0; written < meta.size; ) {
        try {
          const res = await this.request(meta.location, written > 0 ? { headers: { Range: `bytes=${written}-` } } : {});
          if (bodyStart(res, written, meta.size, `${this.repoId}/${path}`) === 0 && written > 0) {
            // The server sent the whole file instead of the rest.
            await file.truncate(0);
            written = 0;
            hash = newHash();
          }
          for await (const chunk of body(res)) {
            if (written + chunk.byteLength > meta.size) {
              throw new CorruptDownload(`${this.repoId}/${path}: the server sent more than the ${meta.size} bytes the hub announced`);
            }
            await file.writeFile(chunk);
            hash?.update(chunk);
            written += chunk.byteLength;
            progress();
          }
          if (written < meta.size) throw new NetworkError(`connection closed at byte ${written} of ${meta.size}`);
        } catch (e) {
          this.signal?.throwIfAborted();
          if (!(e instanceof NetworkError)) throw e;
          if (++failures >= NETWORK.attempts) {
            const where = `${this.repoId}/${path}: download interrupted at byte ${written} of ${meta.size}`;
            throw new NetworkError(`${where} (${e.message}); run again to resume`, { cause: e });
          }
          await new Promise((r) => setTimeout(r, NETWORK.backoffMs * 2 ** (failures - 1)));
        }
      }
    } finally {
      await file.close();
    }
    return hash;
  }
}

const isRedirect = (res: Response): boolean => res.status >= 300 && res.status < 400 && res.headers.has('location');

function reason(e: unknown): string {
  const cause = (e as Error).cause as NodeJS.ErrnoException | undefined;
  return cause?.code ?? cause?.message ?? (e as Error).message;
}

/** Where in the file the response's body starts: 0 (the whole file) or `written` (the rest, a
 *  206 to our Range); anything else is an error. */
function bodyStart(res: Response, written: number, size: number, what: string): number {
  if (res.status === 206) {
    const range = res.headers.get('content-range');
    if (range !== `bytes ${written}-${size - 1}/${size}`) {
      throw new Error(`${what}: asked for bytes ${written}-, the server sent Content-Range ${range} (file size ${size})`);
    }
    return written;
  }
  if (res.status !== 200) {
    const status = `${what}: HTTP ${res.status} ${res.statusText} from ${res.url}`;
    // A transient status is tried again (receive's loop); a 4xx is about what was asked.
    throw isTransientStatus(res.status) ? new NetworkError(status) : new UsageError(status);
  }
  const length = res.headers.get('content-length');
  if (length !== null && Number(length) !== size) throw new Error(`${what}: the server sends ${length} bytes, the hub announced ${size}`);
  return 0;
}

/** The response body's chunks; a broken or stalled connection (no byte for NETWORK.idleTimeoutMs)
 *  is a NetworkError (the caller resumes). */
async function* body(res: Response): AsyncGenerator<Uint8Array> {
  const reader = res.body!.getReader();
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new NetworkError(`stalled: no data for ${NETWORK.idleTimeoutMs / 1000} s`)), NETWORK.idleTimeoutMs);
      });
      const { done, value } = await Promise.race([reader.read(), stalled])
        .catch((e: unknown) => {
          throw e instanceof NetworkError ? e : new NetworkError(`connection lost (${reason(e)})`, { cause: e });
        })
        .finally(() => clearTimeout(timer));
      if (done) return;
      yield value;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}
