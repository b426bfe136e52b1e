// Network faults and the exit-code contract (issue 13, items 7 and 8): a fault server serves the
// tiny model folder with 5xx answers, bodies cut mid-way, wrong lengths, stalls and redirects.
// Transient faults are retried (range reads resumed) and the bytes come out right; faults that
// last end in one line naming the URL and what happened — exit 1 for the network, exit 2 for
// what was asked (a 404) — whether they happen while the folder opens or while weights load.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_COMPONENTS, ModelFolder, urlModelFs } from '../../src/io/model-folder.js';
import { nodeModelFs } from '../../src/io/node-file.js';
import { NETWORK } from '../../src/io/url-reader.js';
import { type CliRun, expectUsageError, runMain } from '../cli/run.js';
import { TINY } from '../helpers/fixtures.js';
import { readTree, startHubServer } from '../helpers/hub-server.js';

/**
 * Serves TINY's files as /<mode>/<path>, honouring Range. Modes: ok; flaky (503 to the first
 * request of each path and range); cut (the first answer to each range request breaks off after
 * half its body); short (the first answer to each range request promises 5 bytes more than it
 * sends); stall (the first answer to each range request sends half, then nothing); stallall
 * (every answer stalls); redirect (302 to /ok/); loop (302 to itself); fail500 (always 500);
 * data500 / data404 (500 / 404 to reads of tensor data, past a safetensors header).
 */
async function startFaultServer(): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const seen = new Set<string>();
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    requests.push(path);
    const [, mode, ...rest] = path.split('/');
    const key = `${path} ${req.headers.range}`;
    const first = !seen.has(key);
    seen.add(key);
    if (mode === 'fail500') return void res.writeHead(500).end('down');
    if (mode === 'flaky' && first) return void res.writeHead(503).end('busy');
    if (mode === 'redirect') return void res.writeHead(302, { Location: `/ok/${rest.join('/')}` }).end();
    if (mode === 'loop') return void res.writeHead(302, { Location: path }).end();
    const bytes = await readFile(join(TINY, ...rest)).catch(() => null);
    if (!bytes) return void res.writeHead(404).end('not found');
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!m) return void res.writeHead(200, { 'Content-Length': bytes.byteLength }).end(bytes);
    const [begin, end] = [Number(m[1]), Math.min(Number(m[2]), bytes.byteLength - 1)];
    const headerEnd = bytes.byteLength >= 8 ? 8 + Number(bytes.readBigUInt64LE(0)) : Infinity;
    if (path.endsWith('.safetensors') && begin >= headerEnd && (mode === 'data500' || mode === 'data404')) {
      return void res.writeHead(mode === 'data500' ? 500 : 404).end('no');
    }
    const body = bytes.subarray(begin, end + 1);
    const fault = (mode === 'cut' || mode === 'short' || mode === 'stall') && first && body.byteLength > 1 ? mode : mode === 'stallall' ? 'stall' : null;
    res.writeHead(206, { 'Content-Range': `bytes ${begin}-${end}/${bytes.byteLength}`, 'Content-Length': body.byteLength + (fault === 'short' ? 5 : 0) });
    if (fault === null) return void res.end(body);
    const half = body.subarray(0, body.byteLength >> 1);
    if (fault === 'short') return void res.end(body); // the connection then closes 5 bytes short
    res.write(half, () => (fault === 'cut' ? setTimeout(() => res.destroy(), 20) : undefined)); // stall: nothing more
  };
  const server = createServer((req, res) => void handle(req, res).catch((e: Error) => res.writeHead(500).end(e.message)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Exit 1 with one "sdxl-turbo: error: " line holding every culprit. */
function expectEnvironmentError(run: CliRun, ...culprits: string[]): void {
  expect(run.err, run.err.join('\n')).toHaveLength(1);
  expect(run.err[0]!.startsWith('sdxl-turbo: error: '), run.err[0]).toBe(true);
  for (const c of culprits) expect(run.err[0]).toContain(c);
  expect(run.code).toBe(1);
}

let server: Awaited<ReturnType<typeof startFaultServer>>;
let tmp: string;
const saved = { ...NETWORK };

beforeAll(async () => {
  server = await startFaultServer();
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-network-test-'));
  // The same tries, without the waits: backoff 1, 2, 4, 8 ms; a stall noticed after 100 ms.
  Object.assign(NETWORK, { backoffMs: 1, idleTimeoutMs: 100 });
});
afterAll(async () => {
  Object.assign(NETWORK, saved);
  await server.close();
  await rm(tmp, { recursive: true, force: true });
});

const generate = (model: string): Promise<CliRun> => runMain(['generate', '--model', model, '--prompt', 'x', '--width', '64', '--height', '64', '--out', join(tmp, 'o.png')]);

describe('transient faults are retried, range reads resumed: the bytes are the files', () => {
  it.each(['flaky', 'cut', 'short', 'stall', 'redirect'])('%s', async (mode) => {
    const remote = await ModelFolder.open(urlModelFs(`${server.url}/${mode}/`), { variant: 'fp16' });
    const local = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp16' });
    try {
      for (const component of MODEL_COMPONENTS) {
        const names = [...local.weights(component).entries.keys()].slice(0, 3);
        for (const name of names) {
          const [got, want] = [(await remote.weights(component).read(name)).data, (await local.weights(component).read(name)).data];
          // Compared as bytes (toEqual walks a typed array element by element: slow here).
          expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)), `${component} ${name}`).toBe(true);
        }
      }
      expect(await remote.readText('tokenizer/merges.txt')).toBe(await local.readText('tokenizer/merges.txt'));
    } finally {
      await remote.close();
      await local.close();
    }
  });
});

describe('faults that last: one line naming the URL; exit 1 for the network, 2 for what was asked, in every phase', () => {
  it('500 on every request while the folder opens: exit 1 after the retries', async () => {
    expectEnvironmentError(await generate(`${server.url}/fail500/`), `${server.url}/fail500/model_index.json: downloading failed after 5 attempts (HTTP 500 Internal Server Error)`);
  });

  it('500 on tensor data, once the folder opened and the run was checked: exit 1 as well', async () => {
    expectEnvironmentError(await generate(`${server.url}/data500/`), `${server.url}/data500/`, 'failed after 5 attempts (HTTP 500 Internal Server Error)');
  });

  it('404: exit 2 while opening (a missing model_index.json) and while loading (a weight file gone)', async () => {
    expectUsageError(await generate(`${server.url}/ok/nowhere/`), `${server.url}/ok/nowhere/model_index.json: missing`);
    expectUsageError(await generate(`${server.url}/data404/`), `${server.url}/data404/`, 'not found (HTTP 404)');
  });

  it('a redirect loop and a server that stalls: exit 1, saying so', async () => {
    expectEnvironmentError(await generate(`${server.url}/loop/`), `${server.url}/loop/model_index.json`, 'redirect');
    expectEnvironmentError(await generate(`${server.url}/stallall/`), `${server.url}/stallall/`, 'failed after 5 attempts (stalled: no data for 0.1 s)');
  });

  it('HF_HUB_OFFLINE: a URL model is refused without a request (exit 2)', async () => {
    const before = server.requests.length;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      expectUsageError(await generate(`${server.url}/ok/`), `--model ${server.url}/ok/: HF_HUB_OFFLINE is set`);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    expect(server.requests.length).toBe(before);
  });

  it('the hub answering 503 to everything: exit 1 after the retries, naming the URL', async () => {
    const hub = await startHubServer({ 'test/tiny': { files: await readTree(TINY), commit: 'b'.repeat(40) } }, { maxRequests: 0 });
    const env = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HUB_CACHE: process.env.HF_HUB_CACHE };
    Object.assign(process.env, { HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(tmp, 'hub') });
    try {
      expectEnvironmentError(await generate('test/tiny'), `${hub.url}/test/tiny/resolve/main/model_index.json: HTTP 503`, 'after 5 attempts');
      expect(hub.requests.length).toBe(5);
    } finally {
      for (const [k, v] of Object.entries(env)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await hub.close();
    }
  });
});
