// A stand-in for the Hugging Face Hub on 127.0.0.1 (random port) for the downloader tests. It
// serves repos (path → bytes) as /{org}/{name}/resolve/{main | commit}/{path} with the hub's
// headers: X-Repo-Commit and ETag (the git blob id) on every file; for *.safetensors (LFS) also
// X-Linked-Etag (sha256) and X-Linked-Size, and a 302 to /cdn/<sha256> on a second port (another
// origin, like the hub's CDN host), which honours Range (206 + Content-Range). Errors carry the hub's X-Error-Code (RepoNotFound,
// RevisionNotFound, EntryNotFound, GatedRepo). It records every request and answers 503 past
// `maxRequests`, so a runaway client fails instead of looping. A renamed repo answers with a
// relative redirect to its new name.

import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';

export interface HubRepo {
  readonly files: ReadonlyMap<string, Uint8Array>;
  readonly commit: string;
  /** A gated repo: answers 401/403 GatedRepo unless the request carries `Bearer <token>`. */
  readonly token?: string;
}

/** What the CDN does wrong, once, for one repo file: break the connection after `dropAfter`
 *  body bytes, send a byte flipped, or ignore the Range header (200 with the whole file). */
export type CdnFault = { readonly dropAfter: number } | { readonly corrupt: true } | { readonly ignoreRange: true };

export interface HubRequest {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  readonly authorization: string | undefined;
}

export interface HubServer {
  readonly url: string;
  /** The CDN's origin (where the LFS files are redirected to). */
  readonly cdnUrl: string;
  /** Every request to the hub and to the CDN (paths /cdn/…), in order. */
  readonly requests: HubRequest[];
  /** Pending CDN faults by repo file path ('unet/diffusion_pytorch_model.fp16.safetensors'). */
  readonly faults: Map<string, CdnFault>;
  close(): Promise<void>;
}

export const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** The git blob id (what the hub sends as the ETag of a file stored in git). */
export const gitBlobId = (bytes: Uint8Array): string => createHash('sha1').update(`blob ${bytes.byteLength}\0`).update(bytes).digest('hex');

export const isLfs = (path: string): boolean => path.endsWith('.safetensors');

/** Every file under `dir`, keyed by its '/'-separated path inside it. */
export async function readTree(dir: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files.set(relative(dir, path).split('\\').join('/'), new Uint8Array(await readFile(path)));
  }
  return files;
}

export interface HubServerOptions {
  /** Old repo id → new one: answered with a relative 307 to the new one, as the hub does. */
  readonly renamed?: Readonly<Record<string, string>>;
  readonly maxRequests?: number;
}

export async function startHubServer(repos: Readonly<Record<string, HubRepo>>, options: HubServerOptions = {}): Promise<HubServer> {
  const { renamed = {}, maxRequests = 5000 } = options;
  const requests: HubRequest[] = [];
  const faults = new Map<string, CdnFault>();
  const cdn = new Map<string, { path: string; bytes: Uint8Array }>();
  const meta = new Map<Uint8Array, { etag: string; sha: string }>();
  for (const repo of Object.values(repos)) {
    for (const [path, bytes] of repo.files) {
      const sha = sha256(bytes);
      // An LFS file's git blob is its pointer file; its etag differs from the sha256 on purpose.
      const pointer = new TextEncoder().encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\nsize ${bytes.byteLength}\n`);
      meta.set(bytes, { etag: gitBlobId(isLfs(path) ? pointer : bytes), sha });
      if (isLfs(path)) cdn.set(sha, { path, bytes });
    }
  }
  let cdnBase = '';

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    requests.push({ method: req.method!, path, range: req.headers.range, authorization: req.headers.authorization });
    if (requests.length > maxRequests) return void res.writeHead(503).end('too many requests');
    const head = req.method === 'HEAD';
    const cdnMatch = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
    if (cdnMatch) return serveCdn(req, res, cdnMatch[1]!, head);

    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const movedTo = m ? renamed[m[1]!] : undefined;
    if (movedTo) return void res.writeHead(307, { Location: `/${movedTo}${req.url!.slice(m![1]!.length + 1)}` }).end();
    const repo = m ? repos[m[1]!] : undefined;
    const error = (status: number, code: string, extra: Record<string, string> = {}): void =>
      void res.writeHead(status, { 'X-Error-Code': code, 'X-Error-Message': code, ...extra }).end(head ? undefined : code);
    if (!m || !repo) return error(404, 'RepoNotFound');
    if (repo.token !== undefined && req.headers.authorization !== `Bearer ${repo.token}`) {
      return error(req.headers.authorization ? 403 : 401, 'GatedRepo');
    }
    if (m[2] !== 'main' && m[2] !== repo.commit) return error(404, 'RevisionNotFound');
    const bytes = repo.files.get(m[3]!);
    if (!bytes) return error(404, 'EntryNotFound', { 'X-Repo-Commit': repo.commit });
    const { etag, sha } = meta.get(bytes)!;
    const headers = { 'X-Repo-Commit': repo.commit, ETag: `"${etag}"` };
    if (isLfs(m[3]!)) {
      const body = `Found. Redirecting to ${cdnBase}/cdn/${sha}`;
      const linked = { 'X-Linked-Etag': `"${sha}"`, 'X-Linked-Size': bytes.byteLength };
      res.writeHead(302, { ...headers, ...linked, Location: `${cdnBase}/cdn/${sha}`, 'Content-Length': body.length });
      return void res.end(head ? undefined : body);
    }
    res.writeHead(200, { ...headers, 'Content-Length': bytes.byteLength });
    res.end(head ? undefined : bytes);
  };

  const serveCdn = (req: IncomingMessage, res: ServerResponse, sha: string, head: boolean): void => {
    const file = cdn.get(sha);
    if (!file) return void res.writeHead(404).end();
    const fault = faults.get(file.path);
    if (fault && !head) faults.delete(file.path);
    const size = file.bytes.byteLength;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range && !(fault && 'ignoreRange' in fault) ? Number(range[1]) : 0;
    if (start >= size && size > 0) return void res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
    let body = file.bytes.subarray(start);
    res.writeHead(start > 0 ? 206 : 200, {
      'Content-Length': body.byteLength,
      ...(start > 0 ? { 'Content-Range': `bytes ${start}-${size - 1}/${size}` } : {}),
    });
    if (head) return void res.end();
    if (fault && 'corrupt' in fault) {
      body = body.slice();
      body[body.byteLength >> 1]! ^= 0x40;
    }
    if (fault && 'dropAfter' in fault) {
      // A pause first, so the client has read what was sent before the connection breaks.
      res.write(body.subarray(0, fault.dropAfter), () => setTimeout(() => res.destroy(), 50));
      return;
    }
    res.end(body);
  };

  const servers = [createServer(handle), createServer(handle)];
  const [hub, cdnHost] = await Promise.all(
    servers.map(async (server) => {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }),
  );
  cdnBase = cdnHost!;
  return {
    url: hub!,
    cdnUrl: cdnBase,
    requests,
    faults,
    close: async () => {
      for (const server of servers) server.closeAllConnections();
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    },
  };
}
