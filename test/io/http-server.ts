// A tiny HTTP server on 127.0.0.1 for the URL reader tests. The first path segment picks how
// it behaves, the rest names the file: /range/… honours Range like a CDN, /whole/… ignores it,
// /short/… sends one byte less than its Content-Range says, /hidden/… sends no Content-Range
// (what a browser sees when CORS does not expose it), /status/<code> answers that status. After
// the first request to a path, /shifted/… answers the wrong range, /changing/… reports another
// total size and /forgetful/… ignores Range.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestServer {
  readonly url: string;
  /** Every request: path and Range header. */
  readonly requests: Array<{ path: string; range: string | undefined }>;
  close(): Promise<void>;
}

export async function startServer(files: (path: string) => Promise<Uint8Array | null>): Promise<TestServer> {
  const requests: TestServer['requests'] = [];
  const served = new Map<string, number>();
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    requests.push({ path, range: req.headers.range });
    const [, mode, ...rest] = path.split('/');
    if (mode === 'status') {
      res.writeHead(Number(rest[0])).end('status page');
      return;
    }
    const bytes = await files(rest.join('/'));
    if (!bytes) {
      res.writeHead(404).end('not found');
      return;
    }
    const size = bytes.byteLength;
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    const later = (served.get(path) ?? 0) > 0;
    served.set(path, (served.get(path) ?? 0) + 1);
    if (mode === 'whole' || (mode === 'forgetful' && later) || !m) {
      res.writeHead(200, { 'Content-Length': size }).end(bytes);
      return;
    }
    const begin = Number(m[1]);
    const end = Math.min(Number(m[2]), size - 1);
    if (begin >= size) {
      res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
      return;
    }
    let body = bytes.subarray(begin, end + 1);
    let range = `bytes ${begin}-${end}/${size}`;
    if (mode === 'short') body = body.subarray(0, body.byteLength - 1);
    if (mode === 'shifted' && later) range = `bytes ${begin + 1}-${end + 1}/${size}`;
    if (mode === 'changing' && later) range = `bytes ${begin}-${end}/${size + 7}`;
    res.writeHead(206, { ...(mode === 'hidden' ? {} : { 'Content-Range': range }), 'Content-Length': body.byteLength }).end(body);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: Error) => res.writeHead(500).end(e.message));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
