// A small static file server for the demo page (npm run web) and the browser tests: folders
// mounted under URL prefixes, GET and HEAD, single byte ranges (what the URL reader asks for),
// files streamed from disk so multi-GB weights never sit in memory. It counts requests per
// path so a test can tell what the page fetched.

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

export interface StaticServer {
  /** e.g. http://127.0.0.1:8080 (no trailing slash). */
  readonly url: string;
  /** Requests per URL path, every method and status. */
  readonly requests: Map<string, number>;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.png': 'image/png',
};

/** Serves each folder of `mounts` under its prefix ('/' → dist/web, '/model/' → a model folder). */
export async function startStaticServer(mounts: Readonly<Record<string, string>>, port = 0, host = '127.0.0.1'): Promise<StaticServer> {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const requests = new Map<string, number>();
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.set(path, (requests.get(path) ?? 0) + 1);
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    const file = resolveFile(path, prefixes, mounts);
    const info = file ? await stat(file).catch(() => null) : null;
    if (!file || !info?.isFile()) return void res.writeHead(404, { 'Content-Type': TYPES['.txt']! }).end(`${path}: not found\n`);
    const size = info.size;
    const headers = {
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      // Every fetch reaches the server (the page caches weights itself; tests count requests).
      'Cache-Control': 'no-store',
    };
    const range = parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') return void res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` }).end();
    const [start, end] = range ?? [0, size - 1];
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'Content-Length': String(Math.max(0, end - start + 1)),
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (req.method === 'HEAD' || end < start) return void res.end();
    createReadStream(file, { start, end })
      .on('error', () => res.destroy())
      .pipe(res);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: Error) => {
      if (!res.headersSent) res.writeHead(500).end(`${e.message}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${bound}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The file a URL path names, or null when no mount holds it or it climbs out of its folder. */
function resolveFile(path: string, prefixes: readonly string[], mounts: Readonly<Record<string, string>>): string | null {
  const prefix = prefixes.find((p) => path.startsWith(p));
  if (prefix === undefined || path.includes('\0')) return null;
  const rest = path.slice(prefix.length);
  const relative = normalize(rest === '' || rest.endsWith('/') ? `${rest}index.html` : rest);
  if (relative.startsWith('..') || relative.startsWith(sep)) return null;
  return join(mounts[prefix]!, relative);
}

/** One range of a Range header ('bytes=a-b', 'bytes=a-', 'bytes=-n'); null serves the whole
 *  file (no header, or several ranges, which RFC 9110 lets a server ignore). */
function parseRange(header: string | undefined, size: number): [number, number] | 'unsatisfiable' | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header ?? '');
  if (!m || (m[1] === '' && m[2] === '')) return null;
  const [start, end] = m[1] === '' ? [Math.max(0, size - Number(m[2])), size - 1] : [Number(m[1]), m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)];
  return start >= size || start > end ? 'unsatisfiable' : [start, end];
}
