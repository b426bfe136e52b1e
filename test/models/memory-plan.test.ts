// The memory plan comes from a dry run of the generation (the real forwards on a RecordingGpu
// with shape-only weights): its per-network pool peaks must equal what the buffer pool
// measures when the same generation really runs on the tiny fixture, and at real size its
// weights must match the manifest and its draws the pipeline's. Prints the real-size plan.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type Gpu, WebGpuRuntime } from '../../src/gpu/runtime.js';
import { openFileReader } from '../../src/io/node-file.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig } from '../../src/models/clip.js';
import { formatMemoryPlan } from '../../src/models/memory-plan.js';
import { parseUNetConfig, UNet2DConditionModel } from '../../src/models/unet.js';
import { AutoencoderKL, parseVaeConfig } from '../../src/models/vae.js';
import type { WeightRegistry } from '../../src/models/weights.js';
import { dryRun, type PipelineConfigs, planMemory, type RunShape, shapeInput, UNBOUNDED } from '../../src/pipeline/dry-run.js';
import { runGeneration, type NetworkName } from '../../src/pipeline/generation.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';
import { testGpu } from '../helpers/gpu.js';

const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;
const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));
const configs = (root: string): PipelineConfigs => ({
  textEncoder: readJson(`${root}/text_encoder/config.json`),
  textEncoder2: readJson(`${root}/text_encoder_2/config.json`),
  unet: readJson(`${root}/unet/config.json`),
  vae: readJson(`${root}/vae/config.json`),
  scheduler: readJson(`${root}/scheduler/scheduler_config.json`),
});

async function load(gpu: Gpu, registry: WeightRegistry, path: string): Promise<void> {
  const source = await SafetensorsFile.open(await openFileReader(`${TINY}/${path}`));
  await registry.load(gpu, source, 'f32');
  await source.close();
}

interface Peaks {
  pooled: number;
  live: number;
}

describe('the dry run against the measured pool peak on the tiny fixture (f32)', () => {
  it('text encoders, UNet (even and odd latent sides), VAE decode (untiled and tiled) and encode', async () => {
    const gpu = await testGpu();
    // Measured eagerly, as the dry run plans the forwards: a replayed UNet (gpu/replay.ts) takes
    // its activations from the replay's own pool, recorded once, not from this one.
    if (!(gpu instanceof WebGpuRuntime)) throw new Error('testGpu() is not the WebGPU runtime');
    gpu.replayForwards = false;
    const tiny = configs(TINY);
    const te1 = CLIPTextModel.create(parseCLIPTextConfig(tiny.textEncoder));
    const te2 = CLIPTextModelWithProjection.create(parseCLIPTextConfig(tiny.textEncoder2));
    const unet = UNet2DConditionModel.create(parseUNetConfig(tiny.unet));
    const vae = AutoencoderKL.create(parseVaeConfig(tiny.vae));
    await load(gpu, te1.registry, 'text_encoder/model.safetensors');
    await load(gpu, te2.registry, 'text_encoder_2/model.safetensors');
    await load(gpu, unet.registry, 'unet/diffusion_pytorch_model.safetensors');
    await load(gpu, vae.registry, 'vae/diffusion_pytorch_model.safetensors');
    const networks = { textEncoders: async () => ({ te1, te2 }), promptsEncoded: async () => {}, unet, vae: vae };
    const results: string[] = [];

    const cases: Array<{ name: string; run: RunShape; vaeMaxActivationBytes: number | null; decodeNote: string }> = [
      // 8×12 latents, two steps (the second allocates nothing new).
      { name: 'text-to-image 96×64 ×2', run: { width: 96, height: 64, batch: 2, steps: 2, imageToImage: false }, vaeMaxActivationBytes: null, decodeNote: 'f32, untiled' },
      // 9×10 latents: odd sides round up on the way down (9 → 5 → 3) and the upsamplers meet
      // the skips' sizes (3 → 5 → 9, not 6 → 12).
      { name: 'image-to-image 80×72 ×2', run: { width: 80, height: 72, batch: 2, steps: 1, imageToImage: true }, vaeMaxActivationBytes: null, decodeNote: 'f32, untiled' },
      // 256 KiB buffers fit 8×8 latent tiles of one image (16 channels at 64×64 f32).
      {
        name: 'text-to-image 96×64 ×2, decode tiled',
        run: { width: 96, height: 64, batch: 2, steps: 1, imageToImage: false },
        vaeMaxActivationBytes: 256 * 1024,
        decodeNote: 'f32, 1×2 tiles of 8×7 latent px (overlaps ≥ 2), 1 image per pass',
      },
    ];
    for (const c of cases) {
      const input = shapeInput(tiny, c.run, 'f32');
      // The real run, each forward measured alone: the pool emptied first, the inputs it is
      // given already live, its outputs counted until released.
      const measured = new Map<NetworkName, Peaks>();
      vae.maxActivationBytes = c.vaeMaxActivationBytes;
      await runGeneration(gpu, networks, input, {
        draw: (_, shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)),
        stage: async (_, body) => body(),
        network: (name, forward) => {
          gpu.trimPool();
          const base = gpu.pool.stats.liveBytes;
          gpu.pool.peakBytes = base;
          gpu.pool.peakLiveBytes = base;
          const out = forward();
          const before = measured.get(name) ?? { pooled: 0, live: 0 };
          measured.set(name, { pooled: Math.max(before.pooled, gpu.pool.peakBytes - base), live: Math.max(before.live, gpu.pool.peakLiveBytes - base) });
          return out;
        },
        progress: () => {},
        checkAborted: () => {},
      });
      vae.maxActivationBytes = null;
      // The device's variant choices: a variant's scratch buffers are part of the plan.
      const planned = await dryRun(tiny, input, { limits: gpu.limits, f16: gpu.f16, subgroups: gpu.subgroups, tuning: gpu.tuning, vaeMaxActivationBytes: c.vaeMaxActivationBytes });
      expect(planned.plan.map((r) => r.network), c.name).toEqual([...measured.keys()]);
      for (const row of planned.plan) {
        const m = measured.get(row.network as NetworkName)!;
        results.push(`${c.name.padEnd(38)} ${row.network.padEnd(15)} measured ${String(m.pooled).padStart(8)} B (live ${String(m.live).padStart(7)}), planned ${String(row.pooledBytes).padStart(8)} B (live ${String(row.liveBytes).padStart(7)})`);
        // Exact: the dry run makes the very allocations of the real run, through the same pool.
        expect(row.pooledBytes, `${c.name}: ${row.network}`).toBe(m.pooled);
        expect(row.liveBytes, `${c.name}: ${row.network}`).toBe(m.live);
        expect(row.liveBytes).toBeLessThanOrEqual(row.pooledBytes);
      }
      expect(planned.plan.find((r) => r.network === 'vae decode')!.note, c.name).toBe(c.decodeNote);
    }
    for (const r of [te1.registry, te2.registry, unet.registry, vae.registry]) r.release();
    gpu.replayForwards = true;
    console.log(results.join('\n'));
  });
});

describe('memory plan at real size', () => {
  const real = configs(LAYOUT);
  const options = { width: 512, height: 512, batch: 1, dtype: 'f16' } as const;

  it('weights: the tensors each network keeps (derived ones in place of their parts) at 2 (f16) or 4 (f32) bytes each', async () => {
    const plan = await planMemory(real, { ...options, imageToImage: true });
    const byName = new Map(plan.map((r) => [r.network, r]));
    const registries = {
      text_encoder: CLIPTextModel.create(parseCLIPTextConfig(real.textEncoder)).registry,
      text_encoder_2: CLIPTextModelWithProjection.create(parseCLIPTextConfig(real.textEncoder2)).registry,
      unet: UNet2DConditionModel.create(parseUNetConfig(real.unet)).registry,
      'vae decode': AutoencoderKL.create(parseVaeConfig(real.vae)).registry,
    };
    const manifest = readJson(`${LAYOUT}/weights-manifest.json`) as { components: Record<string, { num_parameters: number }> };
    for (const [network, component, bytes] of [
      ['text_encoder', 'text_encoder', 2],
      ['text_encoder_2', 'text_encoder_2', 2],
      ['unet', 'unet', 2],
      ['vae decode', 'vae', 4],
    ] as const) {
      const resident = registries[network].resident();
      const parameters = resident.reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0);
      // The derived weights only fold and join checkpoint tensors: within 0.1% of the checkpoint.
      expect(Math.abs(parameters / manifest.components[component]!.num_parameters - 1), network).toBeLessThan(1e-3);
      const weights = byName.get(network)!.weightBytes!;
      // Each tensor's buffer is rounded up to 16 bytes.
      expect(weights, network).toBeGreaterThanOrEqual(parameters * bytes);
      expect(weights, network).toBeLessThan(parameters * bytes + 16 * resident.length);
    }
    expect(byName.get('vae encode')!.weightBytes).toBeNull();
  });

  it('draws: text-to-image the initial latents and a noise per step; image-to-image the posterior and add_noise noises first', async () => {
    const latents = [1, 4, 64, 64];
    const t2i = await dryRun(real, shapeInput(real, { width: 512, height: 512, batch: 1, steps: 2, imageToImage: false }, 'f16'), { limits: UNBOUNDED });
    expect(t2i.draws).toEqual([
      { name: 'initial_latents', shape: latents },
      { name: 'step0.noise', shape: latents },
      { name: 'step1.noise', shape: latents },
    ]);
    const i2i = await dryRun(real, shapeInput(real, { width: 512, height: 512, batch: 2, steps: 1, imageToImage: true }, 'f16'), { limits: UNBOUNDED });
    expect(i2i.draws).toEqual([
      { name: 'posterior_noise', shape: latents },
      { name: 'add_noise_noise', shape: [2, 4, 64, 64] },
      { name: 'step0.noise', shape: [2, 4, 64, 64] },
    ]);
    // Every forward dispatches something, the UNet once per step.
    const unet = t2i.plan.find((r) => r.network === 'unet')!;
    expect(unet.calls).toBe(2);
    for (const r of t2i.plan) expect(r.dispatches, r.network).toBeGreaterThan(0);
  });

  it('activations at 512²: the VAE decoder holds two 256-channel 512² f32 tensors at its last upsample', async () => {
    const started = performance.now();
    const plan = await planMemory(real, { ...options, imageToImage: true });
    const ms = performance.now() - started;
    const decode = plan.find((r) => r.network === 'vae decode')!;
    const big = 256 * 512 * 512 * 4;
    expect(decode.liveBytes).toBeGreaterThanOrEqual(2 * big);
    expect(decode.pooledBytes).toBeLessThan(6 * big);
    // Bounding the decode's buffers to 128 MiB tiles it and shrinks the peak.
    const tiled = (await planMemory(real, { ...options, vaeMaxActivationBytes: 128 * 2 ** 20 })).find((r) => r.network === 'vae decode')!;
    expect(tiled.note).toBe('f32, 2×2 tiles of 38×38 latent px (overlaps ≥ 11), 1 image per pass');
    expect(tiled.pooledBytes).toBeLessThan(decode.pooledBytes);
    console.log(`${formatMemoryPlan(plan, options)}\n(planned in ${ms.toFixed(0)} ms)\n\nwith vaeMaxActivationBytes = 128 MiB:\n${formatMemoryPlan([tiled], options)}`);
    const f32 = { ...options, dtype: 'f32' } as const;
    console.log(formatMemoryPlan(await planMemory(real, f32), f32));
  });
});
