// `sdxl-turbo serve` as a command: bad flags are one line and exit 2 before anything loads (in
// this process); the built CLI as a real process serves a generation, warns when bound beyond
// loopback, fails with exit 1 on a taken port, and on SIGTERM finishes the running generation,
// disposes the pipeline and exits 0 (Node exits only once Dawn's device is released).

import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY } from '../helpers/fixtures.js';
import { buildCli, expectUsageError, removeCli, runMain } from '../cli/run.js';

let cli: string;

beforeAll(async () => {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  cli = await buildCli();
});
afterAll(async () => removeCli(cli));

describe('serve flags', () => {
  it('refuses bad flags by name, before loading anything', async () => {
    expectUsageError(await runMain(['serve']), '--model');
    expectUsageError(await runMain(['serve', '-m', TINY, '--port', '70000']), '--port', '70000');
    expectUsageError(await runMain(['serve', '-m', TINY, '--port', '-1']), '--port');
    expectUsageError(await runMain(['serve', '-m', TINY, '--queue', 'many']), '--queue', 'many');
    expectUsageError(await runMain(['serve', '-m', TINY, '--max-body', '10']), '--max-body', '10');
    expectUsageError(await runMain(['serve', '-m', TINY, '--dtype', 'f64']), '--dtype', 'f64');
    expectUsageError(await runMain(['serve', '-m', TINY, '--prompt', 'a cat']), "'--prompt'");
    const help = await runMain(['serve', '--help']);
    expect(help.code).toBe(0);
    expect(help.out.join('\n')).toContain('sdxl-turbo serve -m MODEL');
  });
});

/** The CLI as a process, its output lines as they come. */
function start(args: string[]): { child: ChildProcess; out: string[]; err: string[]; line: (test: RegExp) => Promise<RegExpExecArray>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  const err: string[] = [];
  const waiting: Array<() => void> = [];
  const collect = (into: string[]) => (chunk: Buffer) => {
    into.push(...chunk.toString().split('\n').filter((l) => l !== ''));
    waiting.splice(0).forEach((wake) => wake());
  };
  child.stdout!.on('data', collect(out));
  child.stderr!.on('data', collect(err));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const line = async (test: RegExp): Promise<RegExpExecArray> => {
    for (;;) {
      for (const l of [...out, ...err]) {
        const m = test.exec(l);
        if (m) return m;
      }
      if (child.exitCode !== null) throw new Error(`exited ${child.exitCode} before printing ${test}: ${[...out, ...err].join('\n')}`);
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
  return { child, out, err, line, exit };
}

function post(port: number, body: unknown): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/images/generations', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

describe('serve as a process', () => {
  it('serves, warns beyond loopback, refuses a taken port (exit 1), and on SIGTERM finishes the running generation and exits 0', async () => {
    const server = start(['serve', '-m', TINY, '--host', '0.0.0.0', '--port', '0', '--verbose']);
    try {
      const port = Number((await server.line(/listening on http:\/\/0\.0\.0\.0:(\d+)/))[1]);
      expect(server.err.some((l) => /warning: serving on 0\.0\.0\.0 without authentication/.test(l)), server.err.join('\n')).toBe(true);
      const taken = start(['serve', '-m', TINY, '--port', String(port)]);
      expect(await taken.exit).toBe(1);
      expect(taken.err.join('\n')).toMatch(/^sdxl-turbo: error: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/m);
      await server.line(/^ready: /);
      const reply = post(port, { prompt: 'a photo of a cat', size: '64x64', seed: 1 });
      await server.line(/^#1 started$/);
      server.child.kill('SIGTERM');
      const { status, body } = await reply;
      expect(status, JSON.stringify(body)).toBe(200);
      expect(body.data).toHaveLength(1);
      expect(await server.exit).toBe(0);
      expect(server.err.join('\n')).toContain('stopping: finishing the running generation');
    } finally {
      server.child.kill('SIGKILL');
    }
  }, 180_000);
});
