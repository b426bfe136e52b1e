// Runs the CLI two ways: main() in this process with its output captured (most cases), and the
// built dist/cli.js as a real process (exit codes, and that Node really exits: Dawn keeps it
// alive while a GPU device is referenced, so a missing dispose() shows up as a timeout).

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { main } from '../../src/cli.js';
import { buildNode } from '../../tools/build-node.mjs';

/**
 * Builds the CLI bundle into a fresh folder and returns its path (removeCli removes it). It goes
 * inside the repository, so the bundle's imports of npm packages resolve.
 */
export async function buildCli(): Promise<string> {
  const build = await mkdtemp(join(fileURLToPath(new URL('../../', import.meta.url)), '.tmp-cli-test-'));
  await buildNode(build, ['src/cli.ts']);
  return join(build, 'cli.js');
}

export async function removeCli(cli: string | undefined): Promise<void> {
  if (cli) await rm(dirname(cli), { recursive: true, force: true });
}

export interface CliRun {
  /** Exit status; null when the process had to be killed. */
  readonly code: number | null;
  readonly out: string[];
  readonly err: string[];
}

const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');

export async function runMain(args: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  // Not a TTY, so no progress bars.
  const code = await main(args, { out: (l) => out.push(...lines(l)), err: (l) => err.push(...lines(l)), progress: new PassThrough() });
  return { code, out, err };
}

/** Dawn's own notices on lavapipe, written by native code to stderr whenever a device opens. */
const DAWN_NOTICE = /^Warning: max\w+ artificially reduced/;

export function runProcess(script: string, args: string[], timeoutMs: number): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out: lines(stdout), err: lines(stderr).filter((l) => !DAWN_NOTICE.test(l)) });
    });
  });
}

/** Exit 2 with exactly one "sdxl-turbo: " line on stderr that contains every `culprit`. */
export function expectUsageError(run: CliRun, ...culprits: Array<string | RegExp>): void {
  expect(run.err, `stdout: ${run.out.join('\n')}`).toHaveLength(1);
  const line = run.err[0]!;
  expect(line.startsWith('sdxl-turbo: ') && !line.startsWith('sdxl-turbo: error:'), line).toBe(true);
  for (const c of culprits) {
    if (typeof c === 'string') expect(line).toContain(c);
    else expect(line).toMatch(c);
  }
  expect(run.code, line).toBe(2);
  expect(run.out).toEqual([]);
}
