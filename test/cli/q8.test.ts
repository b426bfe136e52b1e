// The CLI with 8-bit weights: `generate --weights q8` and `quantize` as real processes (they
// exit, and the folder quantize writes loads 8-bit by itself to nearly the same image), and their bad
// inputs as one-line usage errors.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '../../src/io/png.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';
import { relL2 } from '../helpers/gpu.js';
import { buildCli, expectUsageError, removeCli, runMain, runProcess } from './run.js';

const SPAWN_TIMEOUT = 120_000;
const INPUTS = `${FIXTURES}tiny-sdxl-reference/e2e_t2i_1step_64x64.safetensors`;

let tmp: string;
let cli: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-cli-q8-'));
  cli = await buildCli();
});
afterAll(async () => {
  await removeCli(cli);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('8-bit weights from the CLI', () => {
  it('generate --weights q8 and a quantize folder give the same image', async () => {
    const args = ['--prompt', 'a photo of a cat', '--seed', '1234', '--width', '64', '--height', '64', '--inputs', INPUTS, '--dtype', 'f32'];
    const q8Png = join(tmp, 'q8.png');
    const atLoad = await runProcess(cli, ['generate', '--model', TINY, '--weights', 'q8', '--out', q8Png, ...args], SPAWN_TIMEOUT);
    expect(atLoad.err).toEqual([]);
    expect(atLoad.code).toBe(0);

    const folder = join(tmp, 'tiny-q8');
    const quantized = await runProcess(cli, ['quantize', '--model', TINY, '--out', folder], SPAWN_TIMEOUT);
    expect(quantized.err).toEqual([]);
    expect(quantized.code).toBe(0);
    expect(quantized.out.at(-1)).toMatch(new RegExp(`^wrote ${folder} \\(\\d+\\.\\d MB of weights\\)$`));

    const filePng = join(tmp, 'file.png');
    const fromFile = await runProcess(cli, ['generate', '--model', folder, '--out', filePng, ...args], SPAWN_TIMEOUT);
    expect(fromFile.err).toEqual([]);
    expect(fromFile.code).toBe(0);
    // Nearly the same pixels: the files hold what quantizing at load makes but for the fused
    // weights, quantized a second time (docs/Q8.md); each run is ≈3.5e-3 (relative L2) from
    // fp16 weights' image (test/pipeline/q8.test.ts), so they differ by less than 1e-2.
    const [fromFolder, quantizedAtLoad] = [(await decodePng(await readFile(filePng), filePng)).data, (await decodePng(await readFile(q8Png), q8Png)).data];
    expect(relL2(Float32Array.from(fromFolder), Float32Array.from(quantizedAtLoad))).toBeLessThan(1e-2);
  });

  it('bad --weights, and quantize without --model / --out or onto an existing folder, are usage errors', async () => {
    expectUsageError(await runMain(['generate', '--model', TINY, '--prompt', 'x', '--weights', 'q4']), '--weights must be q8, got "q4"');
    expectUsageError(await runMain(['quantize', '--out', join(tmp, 'x')]), '--model is required');
    expectUsageError(await runMain(['quantize', '--model', TINY]), '--out is required');
    expectUsageError(await runMain(['quantize', '--model', TINY, '--out', tmp]), `--out ${tmp}: already exists`);
    expectUsageError(await runMain(['quantize', '--model', TINY, '--out', join(tmp, 'y'), '--bits', '4']), /Unknown option '--bits'/);
  });
});
