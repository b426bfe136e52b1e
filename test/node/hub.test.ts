// The Hub downloader against a local stand-in for huggingface.co serving the tiny fixture
// pipeline (test/helpers/hub-server.ts): cache layout, variant choice, offline reuse, resume,
// integrity checks and the errors a user can cause.

import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { NetworkError, UsageError } from '../../src/errors.js';
import { downloadSnapshot, type DownloadProgress } from '../../src/node/hub.js';
import { TINY } from '../helpers/fixtures.js';
import { startServer } from '../io/http-server.js';
import { gitBlobId, isLfs, readTree, sha256, startHubServer, type HubRequest, type HubServer } from '../helpers/hub-server.js';

const REPO = 'tiny/sdxl';
const UNET16 = 'unet/diffusion_pytorch_model.fp16.safetensors';
const VAE16 = 'vae/diffusion_pytorch_model.fp16.safetensors';
const TE16 = 'text_encoder/model.fp16.safetensors';
const commitId = (): string => randomBytes(20).toString('hex');

let fixture: Map<string, Uint8Array>;
let server: HubServer;
const commit = commitId();
const noConfigCommit = commitId();
let home: string;

/** The fixture's files of one variant: every non-weight file plus that variant's weights. */
function variantFiles(variant: 'fp16' | 'fp32'): string[] {
  return [...fixture.keys()].filter((p) => !isLfs(p) || p.endsWith('.fp16.safetensors') === (variant === 'fp16')).sort();
}

/** Every file under a snapshot folder, as '/'-separated paths. */
async function listSnapshot(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
}

const repoDir = (repo = REPO): string => join(home, 'hub', `models--${repo.replace('/', '--')}`);
const requestsFor = (from: number) => server.requests.slice(from);

/** The call fails with a UsageError (the CLI's exit 2) with this message. */
async function expectUsage(call: Promise<unknown>, message: string | RegExp): Promise<void> {
  const error = await call.then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(UsageError);
  if (typeof message === 'string') expect((error as Error).message).toBe(message);
  else expect((error as Error).message).toMatch(message);
}

beforeAll(async () => {
  fixture = await readTree(TINY);
  const without = (...paths: string[]) => new Map([...fixture].filter(([p]) => !paths.includes(p)));
  // The unet's fp16 weights as an index and two shards (contents are opaque to the downloader).
  const sharded = without(UNET16);
  const shard = (i: number): string => `diffusion_pytorch_model-0000${i}-of-00002.fp16.safetensors`;
  const index = { metadata: {}, weight_map: { a: shard(1), b: shard(2), c: shard(1) } };
  sharded.set('unet/diffusion_pytorch_model.safetensors.index.fp16.json', new TextEncoder().encode(JSON.stringify(index)));
  sharded.set(`unet/${shard(1)}`, fixture.get(UNET16)!.subarray(0, 100_003));
  sharded.set(`unet/${shard(2)}`, fixture.get(UNET16)!.subarray(100_003));
  server = await startHubServer({
    [REPO]: { files: fixture, commit },
    'tiny/no-fp16-unet': { files: without(UNET16), commit: commitId() },
    'tiny/no-unet-config': { files: without('unet/config.json'), commit: noConfigCommit },
    'tiny/sharded': { files: sharded, commit: commitId() },
    'tiny/gated': { files: fixture, commit: commitId(), token: 'hf_test_token' },
  }, { renamed: { 'old-org/sdxl': REPO } });
});
afterAll(() => server.close());

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'hub-test-'));
  for (const name of ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_OFFLINE']) vi.stubEnv(name, undefined);
  vi.stubEnv('HF_HOME', home);
  vi.stubEnv('HF_ENDPOINT', server.url);
  server.faults.clear();
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(home, { recursive: true, force: true });
});

/** The cache holds exactly these files of the fixture at `commit`, as huggingface_hub lays them out. */
async function expectCached(snapshot: string, paths: string[], repo = REPO, repoCommit = commit): Promise<void> {
  expect(snapshot).toBe(join(repoDir(repo), 'snapshots', repoCommit));
  expect(await readFile(join(repoDir(repo), 'refs', 'main'), 'utf8')).toBe(repoCommit);
  expect(await listSnapshot(snapshot)).toEqual([...paths].sort());
  const blobs = new Set<string>();
  for (const path of paths) {
    const bytes = fixture.get(path)!;
    const etag = isLfs(path) ? sha256(bytes) : gitBlobId(bytes);
    blobs.add(etag);
    const link = join(snapshot, path);
    expect((await lstat(link)).isSymbolicLink(), path).toBe(true);
    expect(await readlink(link)).toBe(`${'../'.repeat(path.split('/').length + 1)}blobs/${etag}`);
    // Hashes, not element-wise toEqual (far too slow on megabytes).
    expect(sha256(await readFile(link)), path).toBe(sha256(bytes));
  }
  // One blob per distinct content (the two tokenizers share vocab.json and merges.txt), nothing partial.
  expect((await readdir(join(repoDir(repo), 'blobs'))).sort()).toEqual([...blobs].sort());
}

describe('downloadSnapshot', () => {
  it('downloads model_index, configs, tokenizers and only the fp16 weights into the HF cache layout', async () => {
    const events: DownloadProgress[] = [];
    const from = server.requests.length;
    const snapshot = await downloadSnapshot(REPO, { onDownload: (e) => events.push(e) });
    const fp16 = variantFiles('fp16');
    expect(fp16).toHaveLength(18);
    await expectCached(snapshot, fp16);

    const seen = requestsFor(from);
    // No request ever names a float32 weight file; the fp16 probe answered first.
    expect(seen.filter((r) => /(model|diffusion_pytorch_model)\.safetensors/.test(r.path))).toEqual([]);
    // HEADs (metadata from the un-followed response): model_index.json at main for the commit,
    // then every file at that commit. One GET per distinct blob: the LFS files straight from the
    // CDN the HEAD's redirect named, the others from /resolve/<commit>/ (tokenizer_2's vocab
    // and merges are tokenizer's blobs, linked without a download).
    const heads = seen.filter((r) => r.method === 'HEAD').map((r) => r.path);
    expect(heads).toEqual([`/${REPO}/resolve/main/model_index.json`, ...heads.slice(1)]);
    expect(heads.slice(1).sort()).toEqual(fp16.map((p) => `/${REPO}/resolve/${commit}/${p}`).sort());
    const gets = seen.filter((r) => r.method === 'GET').map((r) => r.path);
    const shared = ['tokenizer_2/vocab.json', 'tokenizer_2/merges.txt'];
    expect(gets.sort()).toEqual(
      fp16
        .filter((p) => !shared.includes(p))
        .map((p) => (isLfs(p) ? `/cdn/${sha256(fixture.get(p)!)}` : `/${REPO}/resolve/${commit}/${p}`))
        .sort(),
    );
    expect(seen.every((r) => r.range === undefined && r.authorization === undefined)).toBe(true);

    // Progress: per downloaded file, non-decreasing bytes ending at its size; across the whole
    // download, one total (known before any file downloads) and bytes done rising to it.
    const downloaded = fp16.filter((p) => !shared.includes(p));
    expect(new Set(events.map((e) => e.file))).toEqual(new Set(downloaded));
    for (const path of downloaded) {
      const mine = events.filter((e) => e.file === path);
      expect(mine.length, path).toBeGreaterThan(0);
      expect(mine.every((e, i) => e.size === fixture.get(path)!.byteLength && (i === 0 || e.bytes >= mine[i - 1]!.bytes))).toBe(true);
      expect(mine.at(-1)!.bytes).toBe(fixture.get(path)!.byteLength);
    }
    const total = downloaded.reduce((sum, p) => sum + fixture.get(p)!.byteLength, 0);
    expect(events.every((e, i) => e.stage === 'download' && e.total === total && (i === 0 || e.done >= events[i - 1]!.done))).toBe(true);
    expect(events.at(-1)!.done).toBe(total);
  });

  it('reuses a complete cached snapshot without any request, also with HF_HUB_OFFLINE=1', async () => {
    const first = await downloadSnapshot(REPO);
    const from = server.requests.length;
    expect(await downloadSnapshot(REPO)).toBe(first);
    vi.stubEnv('HF_HUB_OFFLINE', '1');
    expect(await downloadSnapshot(REPO)).toBe(first);
    expect(await downloadSnapshot(REPO, { variant: 'fp16' })).toBe(first);
    expect(requestsFor(from)).toEqual([]);
    // Offline, what the snapshot lacks is named with the cache path: the other variant, a file.
    await expectUsage(
      downloadSnapshot(REPO, { variant: 'fp32' }),
      `HF_HUB_OFFLINE is set and the cached ${REPO} (${first}) lacks text_encoder weights (text_encoder/model.safetensors or text_encoder/model.safetensors.index.json)`,
    );
    await rm(join(first, 'tokenizer_2/merges.txt'));
    await expectUsage(downloadSnapshot(REPO), `HF_HUB_OFFLINE is set and the cached ${REPO} (${first}) lacks tokenizer_2/merges.txt`);
    expect(requestsFor(from)).toEqual([]);
  });

  it('fills in only what an incomplete cached snapshot lacks', async () => {
    const snapshot = await downloadSnapshot(REPO);
    await rm(join(snapshot, 'vae/config.json'));
    await rm(join(snapshot, VAE16));
    await rm(join(repoDir(), 'blobs', sha256(fixture.get(VAE16)!)));
    const from = server.requests.length;
    expect(await downloadSnapshot(REPO)).toBe(snapshot);
    // vae/config.json's blob is still cached: only its HEAD; the vae weights: HEAD and GET.
    expect(requestsFor(from).map((r) => `${r.method} ${r.path}`)).toEqual([
      `HEAD /${REPO}/resolve/main/model_index.json`,
      `HEAD /${REPO}/resolve/${commit}/vae/config.json`,
      `HEAD /${REPO}/resolve/${commit}/${VAE16}`,
      `GET /cdn/${sha256(fixture.get(VAE16)!)}`,
    ]);
    await expectCached(snapshot, variantFiles('fp16'));
  });

  it("downloads only the fp32 weights with variant 'fp32', by revision and through the endpoint option", async () => {
    vi.stubEnv('HF_ENDPOINT', 'http://127.0.0.1:9/unused');
    const from = server.requests.length;
    const snapshot = await downloadSnapshot(REPO, { variant: 'fp32', endpoint: server.url });
    await expectCached(snapshot, variantFiles('fp32'));
    expect(requestsFor(from).filter((r) => r.path.includes('.fp16.'))).toEqual([]);
    // A commit sha as the revision: that snapshot directly, no ref of its own.
    const cacheDir = join(home, 'other-cache');
    const byCommit = await downloadSnapshot(REPO, { variant: 'fp32', endpoint: server.url, revision: commit, cacheDir });
    expect(byCommit).toBe(join(cacheDir, `models--tiny--sdxl`, 'snapshots', commit));
    expect(await listSnapshot(byCommit)).toEqual(variantFiles('fp32'));
    expect(await readdir(join(cacheDir, 'models--tiny--sdxl'))).not.toContain('refs');
  });

  it('follows the relative redirect of a renamed repo, caching under the name asked for', async () => {
    const from = server.requests.length;
    const snapshot = await downloadSnapshot('old-org/sdxl');
    expect(snapshot).toBe(join(repoDir('old-org/sdxl'), 'snapshots', commit));
    expect(await listSnapshot(snapshot)).toEqual(variantFiles('fp16'));
    expect(requestsFor(from).slice(0, 2).map((r) => `${r.method} ${r.path}`)).toEqual([
      'HEAD /old-org/sdxl/resolve/main/model_index.json',
      `HEAD /${REPO}/resolve/main/model_index.json`,
    ]);
  });

  it('falls back to fp32 for a model without fp16 weights, unless fp16 is asked for', async () => {
    const repo = 'tiny/no-fp16-unet';
    const snapshot = await downloadSnapshot(repo);
    const files = variantFiles('fp16').filter((p) => p !== UNET16).concat('unet/diffusion_pytorch_model.safetensors');
    expect(await listSnapshot(snapshot)).toEqual(files.sort());
    await rm(home, { recursive: true });
    await expectUsage(
      downloadSnapshot(repo, { variant: 'fp16' }),
      `${repo}: no fp16 safetensors weights for unet on ${server.url} (tried ${UNET16}, unet/diffusion_pytorch_model.safetensors.index.fp16.json)`,
    );
  });

  it('downloads a sharded checkpoint: the index and each shard it names', async () => {
    const repo = 'tiny/sharded';
    const snapshot = await downloadSnapshot(repo);
    const files = await listSnapshot(snapshot);
    expect(files.filter((p) => p.startsWith('unet/'))).toEqual([
      'unet/config.json',
      'unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors',
      'unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors',
      'unet/diffusion_pytorch_model.safetensors.index.fp16.json',
    ]);
    const shard2 = await readFile(join(snapshot, 'unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors'));
    expect(sha256(shard2)).toBe(sha256(fixture.get(UNET16)!.subarray(100_003)));
    const from = server.requests.length;
    vi.stubEnv('HF_HUB_OFFLINE', '1');
    expect(await downloadSnapshot(repo)).toBe(snapshot);
    expect(requestsFor(from)).toEqual([]);
  });

  it('resumes a download whose connection broke off, with a Range request, and checks the sha256', async () => {
    server.faults.set(UNET16, { dropAfter: 2_000_003 });
    const cdn = `/cdn/${sha256(fixture.get(UNET16)!)}`;
    const from = server.requests.length;
    const cdnRequests = (): HubRequest[] => requestsFor(from).filter((r) => r.path === cdn);
    // Bytes received while the first request was the only one: where the resume must start
    // (the client may not have read all the server wrote before the connection broke).
    let received = 0;
    const snapshot = await downloadSnapshot(REPO, {
      onDownload: (e) => {
        if (e.file === UNET16 && cdnRequests().length === 1) received = e.bytes;
      },
    });
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThanOrEqual(2_000_003);
    expect(cdnRequests().map((r) => r.range ?? 'whole')).toEqual(['whole', `bytes=${received}-`]);
    expect(sha256(await readFile(join(snapshot, UNET16)))).toBe(sha256(fixture.get(UNET16)!));
    await expectCached(snapshot, variantFiles('fp16'));
  });

  it('resumes a partial .incomplete file left by an earlier run (hashing the part already there)', async () => {
    const vae = fixture.get(VAE16)!;
    const blob = join(repoDir(), 'blobs', sha256(vae));
    await mkdir(join(repoDir(), 'blobs'), { recursive: true });
    await writeFile(`${blob}.incomplete`, vae.subarray(0, 277_777));
    const events: DownloadProgress[] = [];
    const from = server.requests.length;
    const snapshot = await downloadSnapshot(REPO, { onDownload: (e) => events.push(e) });
    expect(requestsFor(from).filter((r) => r.path === `/cdn/${sha256(vae)}`).map((r) => r.range ?? 'whole')).toEqual(['bytes=277777-']);
    expect(events.find((e) => e.file === VAE16)).toMatchObject({ stage: 'download', file: VAE16, bytes: 277_777, size: vae.byteLength });
    await expectCached(snapshot, variantFiles('fp16'));
  });

  it('starts over when the server ignores the Range of a resume', async () => {
    const vae = fixture.get(VAE16)!;
    await mkdir(join(repoDir(), 'blobs'), { recursive: true });
    await writeFile(join(repoDir(), 'blobs', `${sha256(vae)}.incomplete`), vae.subarray(0, 5_000));
    server.faults.set(VAE16, { ignoreRange: true });
    const from = server.requests.length;
    await expectCached(await downloadSnapshot(REPO), variantFiles('fp16'));
    expect(requestsFor(from).filter((r) => r.path === `/cdn/${sha256(vae)}`).map((r) => r.range)).toEqual(['bytes=5000-']);
  });

  it('rejects corrupted bytes (sha256 mismatch) and leaves no blob or partial file behind', async () => {
    const te = fixture.get(TE16)!;
    server.faults.set(TE16, { corrupt: true });
    await expect(downloadSnapshot(REPO)).rejects.toThrow(`${REPO}/${TE16}: downloaded sha256 `);
    const blobs = await readdir(join(repoDir(), 'blobs'));
    expect(blobs.filter((b) => b.startsWith(sha256(te)))).toEqual([]);
    await expect(lstat(join(repoDir(), 'refs'))).rejects.toThrow('ENOENT');
    // A corrupt partial file from an earlier run is caught the same way (its prefix is hashed).
    const wrong = te.slice(0, 4_321);
    wrong[17]! ^= 1;
    await writeFile(join(repoDir(), 'blobs', `${sha256(te)}.incomplete`), wrong);
    await expect(downloadSnapshot(REPO)).rejects.toThrow(new RegExp(`downloaded sha256 [0-9a-f]{64}, expected ${sha256(te)}; the download was discarded`));
    expect((await readdir(join(repoDir(), 'blobs'))).filter((b) => b.startsWith(sha256(te)))).toEqual([]);
    // The next run, with a healthy server, completes.
    await expectCached(await downloadSnapshot(REPO), variantFiles('fp16'));
  });

  it('reports an unknown repo, revision or file as a UsageError naming it', async () => {
    await expectUsage(
      downloadSnapshot('tiny/nope'),
      `tiny/nope on ${server.url}: repository not found or not accessible (HTTP 404); if it is private or gated, set HF_TOKEN`,
    );
    await expectUsage(downloadSnapshot(REPO, { revision: 'v9' }), `${REPO} on ${server.url}: no revision "v9"`);
    await expectUsage(
      downloadSnapshot('tiny/no-unet-config'),
      `tiny/no-unet-config on ${server.url}: unet/config.json not found (revision ${noConfigCommit}); not a diffusers SDXL pipeline?`,
    );
    await expectUsage(downloadSnapshot('not-a-repo-id'), 'not-a-repo-id: not a Hugging Face repo id (org/name)');
  });

  it('sends HF_TOKEN (or the saved token) to the hub for a gated repo, and says to set it when missing', async () => {
    const repo = 'tiny/gated';
    const gated = `${repo} on ${server.url} is gated: accept its conditions at ${server.url}/${repo}, then set HF_TOKEN to a token of that account`;
    await expectUsage(downloadSnapshot(repo), gated);
    vi.stubEnv('HF_TOKEN', 'hf_wrong');
    await expectUsage(downloadSnapshot(repo), `${gated} (the current one has no access)`);
    vi.stubEnv('HF_TOKEN', 'hf_test_token');
    const from = server.requests.length;
    await downloadSnapshot(repo);
    // The token goes to the hub only, never to the CDN's other host.
    const [cdn, hub] = [requestsFor(from).filter((r) => r.path.startsWith('/cdn/')), requestsFor(from).filter((r) => !r.path.startsWith('/cdn/'))];
    // Hub: 19 HEADs (model_index.json at main, 18 files at the commit), 12 GETs (14 small files,
    // 2 of them tokenizer's blobs again); CDN: the 4 fp16 weight files.
    expect([cdn.length, hub.length]).toEqual([4, 31]);
    expect(hub.every((r) => r.authorization === 'Bearer hf_test_token')).toBe(true);
    expect(cdn.every((r) => r.authorization === undefined)).toBe(true);
    // The token file `huggingface-cli login` writes, when HF_TOKEN is unset.
    vi.stubEnv('HF_TOKEN', undefined);
    await writeFile(join(home, 'token'), 'hf_test_token\n');
    await expect(downloadSnapshot(repo, { cacheDir: join(home, 'second') })).resolves.toContain('second');
  });

  it('HF_HUB_OFFLINE=1 with an empty cache, and an unreachable hub, are clear errors', async () => {
    vi.stubEnv('HF_HUB_OFFLINE', 'true');
    await expectUsage(
      downloadSnapshot(REPO),
      `HF_HUB_OFFLINE is set and ${REPO} (revision main) is not in the cache (no ${join(repoDir(), 'refs', 'main')})`,
    );
    vi.stubEnv('HF_HUB_OFFLINE', undefined);
    const closed = await startHubServer({});
    await closed.close();
    const failure = await downloadSnapshot(REPO, { endpoint: closed.url }).then(() => null, (e: unknown) => e);
    // Not the user's fault: a NetworkError (exit 1), naming the host and the cause.
    expect(failure).toBeInstanceOf(NetworkError);
    expect((failure as Error).message).toBe(`${REPO}: cannot reach ${closed.url} (ECONNREFUSED)`);
    // A server that is not a hub (no X-Repo-Commit): said so, nothing cached.
    const plain = await startServer(async () => new Uint8Array(10));
    try {
      await expect(downloadSnapshot(REPO, { endpoint: `${plain.url}/whole` })).rejects.toThrow(
        `${plain.url}/whole/${REPO}/resolve/main/model_index.json: not a Hugging Face hub answer (HTTP 200, X-Repo-Commit null, ETag undefined, size 10); check HF_ENDPOINT and any proxy`,
      );
    } finally {
      await plain.close();
    }
    await expect(readdir(home)).resolves.toEqual([]);
  });
});
