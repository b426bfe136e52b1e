// The memory plan: weight bytes from the declared weights (checked against the real manifest),
// and the activation estimate (a replay of each forward's allocations through a model of the
// buffer pool) against the pool peak measured when the tiny models really run. Prints the
// real-size plan at 512².

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/runtime.js';
import { openFileReader } from '../../src/io/node-file.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { CLIPTextModel, CLIPTextModelWithProjection, type CLIPTextOutput, parseCLIPTextConfig } from '../../src/models/clip.js';
import {
  clipActivationPeak,
  formatMemoryPlan,
  planMemory,
  type PoolReplay,
  unetActivationPeak,
  vaeDecodeActivationPeak,
  vaeEncodeActivationPeak,
} from '../../src/models/memory-plan.js';
import { parseUNetConfig, UNet2DConditionModel } from '../../src/models/unet.js';
import { AutoencoderKL, parseVaeConfig } from '../../src/models/vae.js';
import type { WeightRegistry } from '../../src/models/weights.js';
import { Tensor } from '../../src/tensor.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';
import { randint, randn, rng, testGpu } from '../helpers/gpu.js';

const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;
const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));
const configs = (root: string) => ({
  textEncoder: readJson(`${root}/text_encoder/config.json`),
  textEncoder2: readJson(`${root}/text_encoder_2/config.json`),
  unet: readJson(`${root}/unet/config.json`),
  vae: readJson(`${root}/vae/config.json`),
});

async function load(gpu: Gpu, registry: WeightRegistry, path: string): Promise<void> {
  const source = await SafetensorsFile.open(await openFileReader(`${TINY}/${path}`));
  await registry.load(gpu, source, 'f32');
  await source.close();
}

/**
 * The pool peak of `run` alone: the pool is emptied first so every activation is a fresh
 * allocation, the inputs `run` is given are already live, and its outputs count until released.
 */
async function measure(gpu: Gpu, run: () => Tensor[]): Promise<number> {
  gpu.trimPool();
  const base = gpu.pool.stats.liveBytes;
  gpu.pool.peakBytes = base;
  const outputs = run();
  await gpu.sync();
  const peak = gpu.pool.peakBytes - base;
  for (const t of outputs) t.release();
  return peak;
}

// The replay mirrors every allocation of the forwards, so only an allocation it misses (or a
// forward changed without it) makes them differ; ±10% keeps the estimate honest while letting
// a small new temporary through (observed: equal for every network).
const FACTOR = 1.1;

function compare(name: string, measured: number, replay: PoolReplay, results: string[]): void {
  results.push(`${name.padEnd(22)} measured ${String(measured).padStart(8)} B, estimated ${String(replay.peakHeld).padStart(8)} B (live ${replay.peakLive} B)`);
  expect(replay.peakHeld, name).toBeGreaterThanOrEqual(measured / FACTOR);
  expect(replay.peakHeld, name).toBeLessThanOrEqual(measured * FACTOR);
  expect(replay.peakLive, name).toBeLessThanOrEqual(replay.peakHeld);
}

describe('activation estimate vs the measured pool peak on the tiny fixture (f32)', () => {
  it('text encoders, UNet, VAE decode (untiled and tiled) and encode', async () => {
    const gpu = await testGpu();
    const random = rng(41);
    const results: string[] = [];

    // text encoders: 2 prompts of 77 ids
    for (const [component, projection] of [['text_encoder', false], ['text_encoder_2', true]] as const) {
      const config = parseCLIPTextConfig(readJson(`${TINY}/${component}/config.json`));
      const built = projection ? CLIPTextModelWithProjection.create(config) : CLIPTextModel.create(config);
      await load(gpu, built.registry, `${component}/model.safetensors`);
      const ids = Int32Array.from({ length: 2 * 77 }, () => randint(random, 0, config.vocabSize - 1));
      const measured = await measure(gpu, () => {
        const out: CLIPTextOutput & { textEmbeds?: Tensor } = built.forward(ids);
        return [out.penultimate, out.lastHiddenState, out.pooled, ...(out.textEmbeds ? [out.textEmbeds] : [])];
      });
      compare(component, measured, clipActivationPeak(config, 2, 77, 'f32', projection), results);
      built.registry.release();
    }

    // UNet: batch 2, 8×12 latent
    const unetConfig = parseUNetConfig(readJson(`${TINY}/unet/config.json`));
    const unet = UNet2DConditionModel.create(unetConfig);
    await load(gpu, unet.registry, 'unet/diffusion_pytorch_model.safetensors');
    const upload = (shape: number[]) => Tensor.upload(gpu, randn(random, shape.reduce((a, b) => a * b, 1)), 'f32', shape, 'f32');
    const inputs = {
      sample: upload([2, 4, 8, 12]),
      timestep: 999,
      encoderHiddenStates: upload([2, 77, unetConfig.crossAttentionDim]),
      textEmbeds: upload([2, unetConfig.textEmbedsDim]),
      timeIds: [64, 96, 0, 0, 64, 96, 64, 96, 0, 0, 64, 96],
    };
    const unetMeasured = await measure(gpu, () => [unet.forward(inputs)]);
    compare('unet', unetMeasured, unetActivationPeak(unetConfig, 2, 8, 12, 77, 'f32'), results);
    inputs.sample.release();

    // UNet at a 9×10 latent: odd sides round up on the way down (9 → 5 → 3) and the upsamplers
    // meet the skips' sizes (3 → 5 → 9, not 6 → 12), which the replay must track exactly.
    const odd = { ...inputs, sample: upload([2, 4, 9, 10]) };
    const oddMeasured = await measure(gpu, () => [unet.forward(odd)]);
    const oddReplay = unetActivationPeak(unetConfig, 2, 9, 10, 77, 'f32');
    compare('unet (9×10 latent)', oddMeasured, oddReplay, results);
    // Exact: the replay mirrors every allocation (a doubling up path overestimates it by a third).
    expect(oddReplay.peakHeld, 'unet (9×10 latent)').toBe(oddMeasured);
    for (const t of [odd.sample, inputs.encoderHiddenStates, inputs.textEmbeds]) t.release();
    unet.registry.release();

    // VAE: decode (1, 4, 8, 8) untiled and in 2×2 tiles, encode (2, 3, 32, 48)
    const vaeConfig = parseVaeConfig(readJson(`${TINY}/vae/config.json`));
    const vae = AutoencoderKL.create(vaeConfig);
    const { registry } = vae;
    await load(gpu, registry, 'vae/diffusion_pytorch_model.safetensors');
    const latents = upload([1, 4, 8, 8]);
    compare('vae decode', await measure(gpu, () => [vae.decode(latents)]), vaeDecodeActivationPeak(vaeConfig, 1, 8, 8, 'f32', null), results);
    const tiling = { images: 1, tile: 5, overlap: 1 };
    compare('vae decode (2×2 tiles)', await measure(gpu, () => [vae.decodeTiled(latents, tiling)]), vaeDecodeActivationPeak(vaeConfig, 1, 8, 8, 'f32', tiling), results);
    const image = upload([2, 3, 32, 48]);
    const encodeMeasured = await measure(gpu, () => {
      const { mean, logvar, std } = vae.encode(image);
      return [mean, logvar, std];
    });
    compare('vae encode', encodeMeasured, vaeEncodeActivationPeak(vaeConfig, 2, 32, 48, 'f32'), results);
    for (const t of [latents, image]) t.release();
    registry.release();
    console.log(results.join('\n'));
  });
});

describe('memory plan at real size', () => {
  const real = configs(LAYOUT);
  const options = { width: 512, height: 512, batch: 1, dtype: 'f16', vaeDtype: 'f32' } as const;

  it('weights: the declared tensors of each network at 2 (f16) or 4 (f32) bytes each', () => {
    const manifest = readJson(`${LAYOUT}/weights-manifest.json`) as { components: Record<string, { num_parameters: number; num_tensors: number }> };
    const plan = planMemory(real, options);
    const byName = new Map(plan.map((r) => [r.network, r]));
    for (const [network, component, bytes] of [
      ['text_encoder', 'text_encoder', 2],
      ['text_encoder_2', 'text_encoder_2', 2],
      ['unet', 'unet', 2],
      ['vae decode', 'vae', 4],
    ] as const) {
      const { num_parameters: parameters, num_tensors: tensors } = manifest.components[component]!;
      const weights = byName.get(network)!.weightBytes!;
      // Each tensor's buffer is rounded up to 16 bytes.
      expect(weights, network).toBeGreaterThanOrEqual(parameters * bytes);
      expect(weights, network).toBeLessThan(parameters * bytes + 16 * tensors);
    }
    expect(byName.get('vae encode')!.weightBytes).toBeNull();
  });

  it('activations at 512²: the VAE decoder holds two 256-channel 512² f32 tensors at its last upsample', () => {
    const plan = planMemory(real, options);
    const decode = plan.find((r) => r.network === 'vae decode')!;
    const big = 256 * 512 * 512 * 4;
    expect(decode.liveBytes).toBeGreaterThanOrEqual(2 * big);
    expect(decode.activationBytes).toBeLessThan(6 * big);
    // Bounding the decode's buffers to 128 MiB tiles it and shrinks the peak.
    const tiled = planMemory(real, { ...options, vaeMaxActivationBytes: 128 * 2 ** 20 }).find((r) => r.network === 'vae decode')!;
    expect(tiled.note).toBe('f32, 2×2 tiles of 38×38 latent px (overlaps ≥ 11), 1 image per pass');
    expect(tiled.activationBytes).toBeLessThan(decode.activationBytes);
    console.log(`${formatMemoryPlan(plan, options)}\n\nwith vaeMaxActivationBytes = 128 MiB:\n${formatMemoryPlan([tiled], options)}`);
    const f32 = { ...options, dtype: 'f32' } as const;
    console.log(formatMemoryPlan(planMemory(real, f32), f32));
  });
});
