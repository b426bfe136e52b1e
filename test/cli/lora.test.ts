// `--lora FILE[:SCALE]` end to end: the built CLI as a real process runs diffusers' lora_e2e case
// (kohya file, f32; PEFT file, f16) through --inputs and --save-tensors; a LoRA that does not fit
// is one line naming the file, exit 2, before any weight is uploaded.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePng } from '../../src/io/png.js';
import { encodeSafetensors } from '../../src/io/safetensors.js';
import { FIXTURES, readReference, ref, TINY } from '../helpers/fixtures.js';
import { hasF16, maxAbsDiff, relL2 } from '../helpers/gpu.js';
import { tinySgmFile } from '../helpers/sgm-file.js';
import { buildCli, expectUsageError, removeCli, runMain, runProcess } from './run.js';

const LORA = `${FIXTURES}tiny-sdxl-extensions/lora`;
const CASE = 'lora0.8_t2i_2step_64x64';
const SPAWN_TIMEOUT = 90_000;

let tmp: string;
let cli: string;

beforeAll(async () => {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-cli-lora-'));
  cli = await buildCli();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
  await removeCli(cli);
});

// Relative L2 as test/pipeline/lora-e2e.test.ts (the same run in-process; observed there
// ≤5.3e-7 in f32, ≤1.6e-3 in f16); the PNG within one 8-bit level (f16: two).
const BOUNDS = { f32: { rel: 2e-6, levels: 1 }, f16: { rel: 5e-3, levels: 2 } } as const;

async function runCase(file: string, dtype: 'f32' | 'f16', model = ['--model', TINY]): Promise<void> {
  const png = join(tmp, `${file}-${dtype}-${model.length}.png`);
  const tensors = join(tmp, `${file}-${dtype}-${model.length}.safetensors`);
  const args = [
    'generate', ...model, '--prompt', 'a photo of a cat', '--steps', '2', '--width', '64', '--height', '64', '--seed', '4242',
    '--lora', `${LORA}/${file}:0.8`, '--inputs', `${LORA}/lora_e2e.safetensors`, '--save-tensors', tensors, '--out', png,
    '--dtype', dtype, '--variant', dtype === 'f32' ? 'fp32' : 'fp16',
  ];
  const run = await runProcess(cli, args, SPAWN_TIMEOUT);
  expect(run.err).toEqual([]);
  expect(run.code).toBe(0);
  const reference = await readReference(`${LORA}/lora_e2e.safetensors`);
  const saved = await readReference(tensors);
  const errors: string[] = [];
  for (const name of ['prompt_embeds', 'pooled_prompt_embeds', 'final_latents', 'image']) {
    const err = relL2(ref(saved, name).data, ref(reference, `${CASE}.${name}`).data);
    errors.push(`${name} ${err.toExponential(2)}`);
    expect(err, name).toBeLessThan(BOUNDS[dtype].rel);
  }
  const levels = maxAbsDiff((await decodePng(await readFile(png), png)).data, ref(reference, `${CASE}.image_uint8`).data);
  console.log(`${file} ${dtype} via the CLI: ${errors.join(', ')}, PNG max |Δ| ${levels}`);
  expect(levels).toBeLessThanOrEqual(BOUNDS[dtype].levels);
}

describe('--lora', () => {
  it('kohya file, fp32 weights, f32 compute: diffusers\' merged run', async () => runCase('tiny_lora_kohya.safetensors', 'f32'));

  it('PEFT file, fp16 weights, f16 compute: diffusers\' merged run', async (ctx) => {
    // Without shader-f16 the adapter cannot run f16: skipped, and said so by the test's name.
    if (!(await hasF16())) return ctx.skip();
    await runCase('tiny_lora_peft.safetensors', 'f16');
  });

  it('kohya file on the single-file checkpoint (SGM layout), f32: the same run', async () =>
    runCase('tiny_lora_kohya.safetensors', 'f32', ['--model', await tinySgmFile(), '--config', TINY]));

  it('a file with keys the model does not have: one line naming it, exit 2', async () => {
    const bad = join(tmp, 'other-model.safetensors');
    await writeFile(bad, encodeSafetensors([{ name: 'lora_unet_input_blocks_99_1_proj_in.lora_down.weight', dtype: 'F32', shape: [4, 8], data: new Float32Array(32) }]));
    const base = ['generate', '--model', TINY, '--prompt', 'x', '--width', '64', '--height', '64'];
    expectUsageError(await runMain([...base, '--lora', `${bad}:0.5`]), `--lora: ${bad}: does not fit the model (1 problem): 1 unmatched (no such module in the model): lora_unet_input_blocks_99_1_proj_in.lora_down.weight`);
    expectUsageError(await runMain([...base, '--lora', join(tmp, 'missing.safetensors')]), `--lora: ${join(tmp, 'missing.safetensors')}: cannot open (ENOENT)`);
  });
});
