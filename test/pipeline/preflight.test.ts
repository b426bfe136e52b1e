// Preflight from the dry run, without a GPU: buffers over the adapter's maxBufferSize and
// bindings an op cannot split under maxStorageBufferBindingSize are usage errors naming the
// network, and supplied random tensors are checked against the draws the run makes.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { dryRun, type PipelineConfigs, shapeInput, UNBOUNDED } from '../../src/pipeline/dry-run.js';
import { checkInputs, checkLimits } from '../../src/pipeline/preflight.js';
import { FIXTURES } from '../helpers/fixtures.js';

const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;
const readJson = (path: string): unknown => JSON.parse(readFileSync(`${LAYOUT}/${path}`, 'utf8'));
const real: PipelineConfigs = {
  textEncoder: readJson('text_encoder/config.json'),
  textEncoder2: readJson('text_encoder_2/config.json'),
  unet: readJson('unet/config.json'),
  vae: readJson('vae/config.json'),
  scheduler: readJson('scheduler/scheduler_config.json'),
};
const run = { width: 512, height: 512, batch: 1, steps: 1, imageToImage: false };
const input = shapeInput(real, run, 'f16');

async function usageMessage(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UsageError);
  return (error as Error).message;
}

describe('preflight from the dry run (real configs, no GPU)', () => {
  it('fits generous limits, and reports the run it checked', async () => {
    const checked = await checkLimits(real, input, { limits: { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 27 } });
    expect(checked.plan.map((r) => r.network)).toEqual(['text_encoder', 'text_encoder_2', 'unet context', 'unet', 'vae decode']);
    expect(checked.largestBinding).toBeLessThanOrEqual(2 ** 27);
  });

  it('the VAE decode tiles under maxBufferSize instead of failing', async () => {
    // Untiled, the decoder holds 256 × 512 × 512 f32 = 268 MB buffers; 128 MiB ones need tiles.
    const checked = await checkLimits(real, input, { limits: { maxBufferSize: 2 ** 27, maxStorageBufferBindingSize: 2 ** 27 } });
    const decode = checked.plan.find((r) => r.network === 'vae decode')!;
    expect(decode.note).toBe('f32, 2×2 tiles of 38×38 latent px (overlaps ≥ 11), 1 image per pass');
    expect(decode.largestBuffer).toBeLessThanOrEqual(2 ** 27);
  });

  it('a buffer over maxBufferSize, weights included, names the network and the sizes', async () => {
    // text_encoder's token embedding is 49408 × 768 f16 = 76 MB, text_encoder_2's 49408 × 1280 = 126 MB.
    const message = await usageMessage(checkLimits(real, input, { limits: { maxBufferSize: 100 * 2 ** 20, maxStorageBufferBindingSize: 64 * 2 ** 20 } }));
    expect(message).toBe("512×512 is too large for this device: the text_encoder_2 needs a 126 MB buffer, over the adapter's maxBufferSize of 105 MB; use a smaller size or fewer images");
  });

  it('a binding no op can split under maxStorageBufferBindingSize is named by the limit', async () => {
    const message = await usageMessage(checkLimits(real, input, { limits: { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 1024 } }));
    expect(message).toMatch(/^512×512 is too large for this device: the \S+ binds more than the adapter's maxStorageBufferBindingSize of 0 MB \(.+\); use a smaller size or fewer images$/);
  });

  it('supplied random tensors must be drawn by the run, with its shapes', async () => {
    const { draws } = await dryRun(real, shapeInput(real, { ...run, steps: 2 }, 'f16'), { limits: UNBOUNDED });
    checkInputs(draws, new Map([['step1.noise', new Float32Array(4 * 64 * 64)]]), 'inputs'); // fits
    expect(() => checkInputs(draws, new Map([['posterior_noise', new Float32Array(1)]]), 'inputs')).toThrow(
      'inputs: posterior_noise is not drawn by this run (it draws initial_latents, step0.noise, step1.noise)',
    );
    expect(() => checkInputs(draws, new Map([['initial_latents', new Float32Array(5)]]), 'inputs')).toThrow(
      'inputs: initial_latents has 5 values, expected 16384 for shape (1, 4, 64, 64)',
    );
  });
});
