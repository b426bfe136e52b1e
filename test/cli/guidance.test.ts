// The guidance and scheduler flags of `sdxl-turbo generate` on the tiny fixture: SDXL base-style
// Euler, leading, guidance 7 with a negative prompt through --inputs, and image-to-image with a
// negative prompt from the seed, against diffusers' guided runs (tiny-sdxl-extensions/guidance)
// through --save-tensors and the PNG; bad values: one line naming the flag, exit 2, before
// any weight is uploaded. GPU runs use the built CLI as a real process (see cli.test.ts).

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng, readPngText } from '../../src/io/png-encode.js';
import { decodePng } from '../../src/io/png.js';
import { encodeSafetensors } from '../../src/io/safetensors.js';
import { FIXTURES, readReference, ref, TINY } from '../helpers/fixtures.js';
import { maxAbsDiff, relL2 } from '../helpers/gpu.js';
import { buildCli, expectUsageError, removeCli, runMain, runProcess } from './run.js';

const REFERENCE = `${FIXTURES}tiny-sdxl-extensions/guidance/guidance.safetensors`;
/** f32 compute from the fp32 files: test/pipeline/guidance.test.ts's bound and reasons
 *  (guidance multiplies the UNet's rounding by up to 2g − 1) [≤3.4e-6 there]. */
const F32 = ['--dtype', 'f32', '--variant', 'fp32'];
const BOUND = 1e-5;
const SPAWN_TIMEOUT = 90_000;

let tmp: string;
let cli: string;

beforeAll(async () => {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-cli-guidance-'));
  cli = await buildCli();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
  await removeCli(cli);
});

/** The saved tensors and the PNG against the case's reference. */
async function expectCase(name: string, tensorsPath: string, png: string): Promise<void> {
  const reference = await readReference(REFERENCE);
  const saved = await readReference(tensorsPath);
  for (const t of ['final_latents', 'image', 'prompt_embeds', 'pooled_prompt_embeds', 'negative_prompt_embeds', 'negative_pooled_prompt_embeds']) {
    expect(relL2(ref(saved, t).data, ref(reference, `${name}.${t}`).data), t).toBeLessThan(BOUND);
  }
  const image = await decodePng(await readFile(png), png);
  expect(maxAbsDiff(image.data, ref(reference, `${name}.image_uint8`).data)).toBeLessThanOrEqual(1); // a rounding edge
}

describe('generate with guidance', () => {
  it('Euler, leading, guidance 7, a negative prompt, through --inputs (SDXL base-style flags)', async () => {
    const name = 'cfg7_neg_euler_leading_3step_64x96';
    const reference = await readReference(REFERENCE);
    const draws = [...reference].filter(([k]) => k.startsWith(`${name}.`) && /\.(initial_latents|step\d+\.noise)$/.test(k));
    expect(draws).toHaveLength(4); // initial latents and Euler's three (unused) step noises
    const inputs = join(tmp, 'cfg7-inputs.safetensors');
    await writeFile(inputs, encodeSafetensors(draws.map(([k, t]) => ({ name: k, dtype: 'F32' as const, shape: [...t.shape], data: t.data }))));
    const png = join(tmp, 'cfg7.png');
    const tensors = join(tmp, 'cfg7.safetensors');
    const run = await runProcess(cli, [
      'generate', '--model', TINY, '--prompt', 'a lighthouse at dusk', '--negative-prompt', 'ugly', '--guidance-scale', '7',
      '--scheduler', 'euler', '--timestep-spacing', 'leading', '--steps', '3', '--width', '96', '--height', '64', '--seed', '2026',
      '--inputs', inputs, '--save-tensors', tensors, '--out', png, ...F32,
    ], SPAWN_TIMEOUT);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    await expectCase(name, tensors, png);
    const text = readPngText(await readFile(png));
    expect(text.parameters).toBe(`a lighthouse at dusk\nNegative prompt: ugly\nSteps: 3, Sampler: Euler, CFG scale: 7, Seed: 2026, Size: 96x64, Model: ${TINY}`);
    expect(text).toMatchObject({ negative_prompt: 'ugly', guidance_scale: '7', scheduler: 'euler' });
  });

  it('image-to-image with guidance 4 and a negative prompt, from the seed', async () => {
    const name = 'i2i_cfg4_neg_s0.75_4step_64x64';
    const reference = await readReference(REFERENCE);
    const input = join(tmp, 'i2i-in.png');
    await writeFile(input, await encodePng({ width: 64, height: 64, data: Uint8Array.from(ref(reference, `${name}.input_image_uint8`).data) }));
    const png = join(tmp, 'i2i.png');
    const tensors = join(tmp, 'i2i.safetensors');
    const run = await runProcess(cli, [
      'generate', '--model', TINY, '--prompt', 'an oil painting of a harbor', '--negative-prompt', 'text, watermark', '--guidance-scale', '4',
      '--image', input, '--strength', '0.75', '--steps', '4', '--seed', '11', '--save-tensors', tensors, '--out', png, ...F32,
    ], SPAWN_TIMEOUT);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    await expectCase(name, tensors, png);
  });
});

describe('bad guidance and scheduler flags', () => {
  const base = ['generate', '--model', TINY, '--prompt', 'a cat', '--out', '/tmp/never-written.png'];
  it('one line naming the flag, exit 2', async () => {
    expectUsageError(await runMain([...base, '--guidance-scale=-1']), '--guidance-scale must be a finite number ≥ 0', '-1');
    expectUsageError(await runMain([...base, '--guidance-scale', 'lots']), '--guidance-scale must be a number, got "lots"');
    expectUsageError(await runMain([...base, '--guidance-scale', 'Infinity']), '--guidance-scale must be a number, got "Infinity"');
    expectUsageError(await runMain([...base, '--scheduler', 'ddim']), '--scheduler must be euler, euler-a, got "ddim"');
    expectUsageError(await runMain([...base, '--timestep-spacing', 'karras']), '--timestep-spacing must be leading, trailing, linspace, got "karras"');
    expectUsageError(
      await runMain([...base, '--prompt', 'a dog', '--prompt', 'a bird', '--negative-prompt', 'blurry', '--negative-prompt', 'dark']),
      '--negative-prompt has 2 prompts, expected one per prompt (3) or a single string',
    );
  });
});
