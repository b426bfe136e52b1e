// Every loop over user numbers terminates (issue 13, item 2): a strength that would need more
// steps than the limit, and batches over the limit, are refused up front with the limit named.

import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { checkSeed, fewestSteps, MAX_BATCH, MAX_SEED, MAX_STEPS, resolveGenerate } from '../../src/pipeline/options.js';
import { TINY } from '../helpers/fixtures.js';
import { encodePng } from '../../src/io/png-encode.js';
import { expectUsageError, runMain } from '../cli/run.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const image = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3) };

function usageOf(work: () => unknown): UsageError {
  try {
    work();
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  throw new Error('expected a UsageError');
}

describe('strength and steps', () => {
  it('the fewest steps of a strength: 2 at 0.5, 1 at 1, 1000 at 0.001, rounding of 1/strength handled', () => {
    expect(fewestSteps(0.5)).toBe(2);
    expect(fewestSteps(1)).toBe(1);
    expect(fewestSteps(0.3)).toBe(4);
    expect(fewestSteps(1 / MAX_STEPS)).toBe(MAX_STEPS);
    for (let n = 1; n <= MAX_STEPS; n++) expect(Math.floor(fewestSteps(1 / n) * (1 / n))).toBe(1);
  });

  it('a tiny strength (1e-18, the smallest double) is refused at once, naming the value as given and the limit', () => {
    for (const strength of [1e-18, Number.MIN_VALUE, 0.0009]) {
      const e = usageOf(() => resolveGenerate({ prompt: 'x', image, strength }, true));
      expect(e.option).toBe('strength');
      expect(e.message).toContain(`strength ${strength} keeps no denoising step within the limit of ${MAX_STEPS} steps`);
    }
  });

  it('batches above the limit are refused, naming it', () => {
    const many = Array<string>(MAX_BATCH + 1).fill('x');
    expect(usageOf(() => resolveGenerate({ prompt: many }, false)).message).toBe(`prompt: ${MAX_BATCH + 1} prompts × 1 images per prompt = ${MAX_BATCH + 1} images, above the limit of ${MAX_BATCH} per call`);
    const e = usageOf(() => resolveGenerate({ prompt: Array<string>(8).fill('x'), imagesPerPrompt: 9 }, false));
    expect(e.option).toBe('imagesPerPrompt');
    expect(e.message).toContain(`= 72 images, above the limit of ${MAX_BATCH}`);
    expect(resolveGenerate({ prompt: Array<string>(8).fill('x'), imagesPerPrompt: 8 }, false).batch).toBe(64);
  });

  it('the CLI: --strength 1e-18 and an oversized batch are one line, exit 2', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'sdxl-limits-test-'));
    try {
      const png = join(tmp, 'in.png');
      await writeFile(png, await encodePng({ width: 16, height: 16, data: new Uint8Array(16 * 16 * 3) }));
      const base = ['generate', '--model', TINY, '--prompt', 'x', '--out', join(tmp, 'o.png')];
      expectUsageError(await runMain([...base, '--image', png, '--strength', '1e-18']), '--strength 1e-18 keeps no denoising step within the limit of 1000 steps');
      expectUsageError(await runMain([...base, '--prompt', 'y', '--num-images', '64']), '--num-images: 2 prompts × 64 images per prompt = 128 images, above the limit of 64');
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

describe('seeds', () => {
  it('cover torch\'s range 0 … 2^64 − 1 exactly (bigint past 2^53 − 1), kept as given', () => {
    expect(resolveGenerate({ prompt: 'x', seed: MAX_SEED }, false).seed).toBe(18446744073709551615n);
    expect(resolveGenerate({ prompt: 'x', seed: 2n ** 53n + 1n }, false).seed).toBe(9007199254740993n);
    expect(resolveGenerate({ prompt: 'x', seed: 7 }, false).seed).toBe(7);
    expect(checkSeed(0n)).toBe(0n);
    // Other integer options refuse a bigint as bad input (not a TypeError from the message).
    expect(usageOf(() => resolveGenerate({ prompt: 'x', steps: 2n as unknown as number }, false)).message).toBe('steps must be an integer in [1, 1000], got 2n');
  });

  it('out of range or inexact is refused, printing the value as given', () => {
    expect(usageOf(() => checkSeed(2n ** 64n)).message).toBe('seed must be an integer in [0, 18446744073709551615], got 18446744073709551616');
    expect(usageOf(() => checkSeed(-2n)).message).toContain('got -2');
    expect(usageOf(() => checkSeed(2 ** 53)).message).toContain('got 9007199254740992 (not exact as a number: pass a bigint)');
    expect(usageOf(() => checkSeed(1.5)).message).toContain('got 1.5');
  });
});
