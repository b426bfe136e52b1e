// Parity of the VAE with diffusers on the tiny fixture (decode of latents / scaling_factor with
// every hooked intermediate; encode of a 64×64 picture to mean / logvar / std with every hook)
// for fp32 weights in f32, fp16 weights in f32 (the pipeline's default: force_upcast) and fp16
// weights in f16. The reference was computed in float32 from the fp32 weights. Then the tiled
// decode: exact against a CPU blend of its own tiles, close to the untiled decode.

import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { sizeClass } from '../../src/gpu/buffer-pool.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { openFileReader } from '../../src/io/node-file.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { planVaeTiling, VaeProbe } from '../../src/models/decode-tiling.js';
import { AutoencoderKL, parseVaeConfig, samplePosterior, tileSpans } from '../../src/models/vae.js';
import { uploadAs } from '../../src/ops/cast.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { readReference, ref, type RefTensor, TINY, TINY_REF } from '../helpers/fixtures.js';
import { randn, relL2, rng, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit } from '../helpers/ops.js';
import { poisonPool } from '../helpers/poison.js';

const config = parseVaeConfig(JSON.parse(readFileSync(`${TINY}/vae/config.json`, 'utf8')));

/** The fixture's hooks in execution order. */
const DECODE_HOOKS = [
  'post_quant_conv', 'decoder.conv_in', 'decoder.mid_block',
  'decoder.up_blocks.0', 'decoder.up_blocks.1', 'decoder.up_blocks.2', 'decoder.up_blocks.3',
  'decoder.conv_norm_out', 'decoder.conv_out',
];
const ENCODE_HOOKS = [
  'encoder.conv_in', 'encoder.down_blocks.0', 'encoder.down_blocks.1', 'encoder.down_blocks.2', 'encoder.down_blocks.3',
  'encoder.mid_block', 'encoder.conv_norm_out', 'encoder.conv_out', 'quant_conv',
];

// Largest activation of these cases: the decoder's last upsample, (1, 32, 64, 64) f32 = 512 KiB.
const POISON_BYTES = 1024 * 1024;

type Weights = 'diffusion_pytorch_model.safetensors' | 'diffusion_pytorch_model.fp16.safetensors';

interface Run {
  readonly weights: Weights;
  readonly dtype: DType;
  /** Relative-L2 bound for every hook and output, and why. */
  readonly tolerance: number;
  readonly why: string;
}

const RUNS: Run[] = [
  {
    weights: 'diffusion_pytorch_model.safetensors',
    dtype: 'f32',
    tolerance: 1e-4,
    why: 'same weights, f32 math: only summation order differs from torch (observed ≤3e-6)',
  },
  {
    weights: 'diffusion_pytorch_model.fp16.safetensors',
    dtype: 'f32',
    tolerance: 5e-3,
    why: 'f16-rounded weights (rel. 2^-11 each) against an fp32-weight reference, ~30 layers; f32 math (observed ≤1.1e-3)',
  },
  {
    weights: 'diffusion_pytorch_model.fp16.safetensors',
    dtype: 'f16',
    tolerance: 1e-2,
    why: 'f16 weights and activations (rel. 2^-11 per rounding), f32 accumulation, ~30 layers (observed ≤2e-3)',
  },
];

let reference: Map<string, RefTensor>;
beforeAll(async () => {
  reference = await readReference(`${TINY_REF}/vae.safetensors`);
});

async function loadVae(gpu: Gpu, weights: Weights, dtype: DType): Promise<AutoencoderKL> {
  const model = AutoencoderKL.create(config);
  const source = await SafetensorsFile.open(await openFileReader(`${TINY}/vae/${weights}`));
  await model.registry.load(gpu, source, dtype);
  await source.close();
  return model;
}

const upload = (gpu: Gpu, name: string, dtype: DType): Tensor => {
  const t = ref(reference, name);
  return uploadAs(gpu, t.data, 'f32', t.shape, dtype, { label: name });
};

/** Runs `forward` with hooks, checks their order, shapes and dtype; returns each hook's values. */
async function hooked(names: readonly string[], prefix: string, dtype: DType, forward: (hook: (name: string, t: Tensor) => void) => void): Promise<Map<string, Float32Array>> {
  const seen: string[] = [];
  const reads: Array<Promise<Float32Array>> = [];
  forward((name, t) => {
    seen.push(name);
    expect(t.dtype).toBe(dtype);
    expect(t.shape, name).toEqual(ref(reference, `${prefix}.hook.${name}`).shape);
    reads.push(t.read());
  });
  expect(seen).toEqual(names);
  const values = await Promise.all(reads);
  return new Map(names.map((n, i) => [n, values[i]!]));
}

describe('AutoencoderKL on the tiny fixture', () => {
  it('the fixture records exactly the hooks checked here', () => {
    const recorded = (prefix: string) => [...reference.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)).sort();
    expect(recorded('decode.hook.')).toEqual([...DECODE_HOOKS].sort());
    expect(recorded('encode.hook.')).toEqual([...ENCODE_HOOKS].sort());
  });

  for (const run of RUNS) {
    it(`${run.weights} in ${run.dtype}: decode and encode match diffusers, hooks included (${run.why})`, async (ctx) => {
      const gpu = await testGpu();
      if (run.dtype === 'f16' && !gpu.f16) ctx.skip();
      const vae = await loadVae(gpu, run.weights, run.dtype);
      const errors = new Map<string, number>();
      const live = gpu.pool.stats.liveBytes;

      // decode, hooked (norm and SiLU apart, as the hooks need)
      poisonPool(gpu, POISON_BYTES, 8);
      const latents = upload(gpu, 'decode.latents', run.dtype);
      let image!: Tensor;
      const decodeHooks = await hooked(DECODE_HOOKS, 'decode', run.dtype, (hook) => {
        image = vae.decode(latents, hook);
      });
      for (const [name, v] of decodeHooks) errors.set(`decode ${name}`, relL2(v, ref(reference, `decode.hook.${name}`).data));
      expect(image.shape).toEqual([1, 3, 64, 64]);
      errors.set('decode image', relL2(await image.read(), ref(reference, 'decode.image').data));
      image.release();

      // decode without hooks (conv_norm_out fused with SiLU)
      poisonPool(gpu, POISON_BYTES, 8);
      const plain = vae.decode(latents);
      errors.set('decode image (no hooks)', relL2(await plain.read(), ref(reference, 'decode.image').data));
      plain.release();
      latents.release();
      expect(gpu.pool.stats.liveBytes).toBe(live);

      // encode, hooked, then without hooks
      poisonPool(gpu, POISON_BYTES, 8);
      const picture = upload(gpu, 'encode.image', run.dtype);
      let posterior!: ReturnType<AutoencoderKL['encode']>;
      const encodeHooks = await hooked(ENCODE_HOOKS, 'encode', run.dtype, (hook) => {
        posterior = vae.encode(picture, hook);
      });
      for (const [name, v] of encodeHooks) errors.set(`encode ${name}`, relL2(v, ref(reference, `encode.hook.${name}`).data));
      for (const part of ['mean', 'logvar', 'std'] as const) {
        expect(posterior[part].shape).toEqual([1, 4, 8, 8]);
        errors.set(`encode ${part}`, relL2(await posterior[part].read(), ref(reference, `encode.${part}`).data));
        posterior[part].release();
      }
      poisonPool(gpu, POISON_BYTES, 8);
      const again = vae.encode(picture);
      errors.set('encode mean (no hooks)', relL2(await again.mean.read(), ref(reference, 'encode.mean').data));
      errors.set('encode std (no hooks)', relL2(await again.std.read(), ref(reference, 'encode.std').data));
      for (const t of [again.mean, again.logvar, again.std, picture]) t.release();
      expect(gpu.pool.stats.liveBytes).toBe(live);

      console.log(`${run.weights} / ${run.dtype}: relative L2\n${[...errors].map(([k, e]) => `  ${k.padEnd(30)} ${e.toExponential(2)}`).join('\n')}`);
      for (const [name, e] of errors) expect(e, `${name} (${run.why})`).toBeLessThan(run.tolerance);
      vae.registry.release();
      await gpu.sync();
    });
  }

  it('samples mean + std · noise from the posterior', async () => {
    const gpu = await testGpu();
    const mean = upload(gpu, 'encode.mean', 'f32');
    const std = upload(gpu, 'encode.std', 'f32');
    const logvar = upload(gpu, 'encode.logvar', 'f32');
    const noiseValues = randn(rng(17), mean.size);
    const noise = Tensor.upload(gpu, noiseValues, 'f32', mean.shape, 'f32');
    const sample = samplePosterior({ mean, logvar, std }, noise);
    const m = ref(reference, 'encode.mean').data;
    const s = ref(reference, 'encode.std').data;
    // One f32 multiply-add per element (≈1e-7 relative).
    expect(relL2(await sample.read(), m.map((v, i) => v + s[i]! * noiseValues[i]!))).toBeLessThan(1e-6);
    const wrong = Tensor.empty(gpu, [1, 4, 8, 9], 'f32');
    expect(() => samplePosterior({ mean, logvar, std }, wrong)).toThrow(/samplePosterior: noise \(1, 4, 8, 9\) must match the posterior \(1, 4, 8, 8\)/);
    for (const t of [mean, std, logvar, noise, sample, wrong]) t.release();
  });

  it('rejects inputs of the wrong shape or dtype', async () => {
    const gpu = await testGpu();
    const vae = await loadVae(gpu, 'diffusion_pytorch_model.safetensors', 'f32');
    const bad = [
      [Tensor.empty(gpu, [1, 3, 8, 8], 'f32'), /AutoencoderKL\.decode: latents are \(1, 3, 8, 8\), expected \(B, 4, h, w\)/],
      [Tensor.empty(gpu, [1, 3, 60, 64], 'f32'), /AutoencoderKL\.encode: image is \(1, 3, 60, 64\), expected \(B, 3, H, W\) with H and W positive multiples of 8/],
    ] as const;
    expect(() => vae.decode(bad[0][0])).toThrow(bad[0][1]);
    expect(() => vae.encode(bad[1][0])).toThrow(bad[1][1]);
    if (gpu.f16) {
      const half = Tensor.empty(gpu, [1, 4, 8, 8], 'f16');
      expect(() => vae.decode(half)).toThrow(/AutoencoderKL\.decode: latents is f16 but the weights are f32/);
      half.release();
    }
    for (const [t] of bad) t.release();
    vae.registry.release();
    await gpu.sync();
  });

  it('leaves no activation behind when a hook throws mid-decode or mid-encode', async () => {
    const gpu = await testGpu();
    const vae = await loadVae(gpu, 'diffusion_pytorch_model.safetensors', 'f32');
    const latents = Tensor.empty(gpu, [1, 4, 8, 8], 'f32');
    const image = Tensor.empty(gpu, [1, 3, 32, 32], 'f32');
    for (const t of [latents, image]) t.fill(0);
    const live = gpu.pool.stats.liveBytes;
    const stopAt = (stop: string) => (name: string): void => {
      if (name === stop) throw new Error(`stopped at ${name}`);
    };
    for (const stop of ['decoder.mid_block', 'decoder.up_blocks.1', 'decoder.conv_norm_out']) {
      expect(() => vae.decode(latents, stopAt(stop))).toThrow(`stopped at ${stop}`);
      expect(gpu.pool.stats.liveBytes, stop).toBe(live);
    }
    for (const stop of ['encoder.down_blocks.0', 'encoder.mid_block', 'quant_conv']) {
      expect(() => vae.encode(image, stopAt(stop))).toThrow(`stopped at ${stop}`);
      expect(gpu.pool.stats.liveBytes, stop).toBe(live);
    }
    expect(latents.released || image.released).toBe(false);
    for (const t of [latents, image]) t.release();
    vae.registry.release();
    await gpu.sync();
  });
});

/**
 * A tiled pass assembled on the CPU in float64: `forward` (an untiled GPU pass) on each tile of
 * `input` cut as tileSpans says over its h × w latent grid (input pixels `inScale` per latent
 * pixel), the outputs (`outChannels`, `outScale` pixels per latent pixel) added with diffusers'
 * blend weights: the new tile's weight rising as y / overlap across each overlap.
 */
async function cpuBlend(
  gpu: Gpu,
  input: { data: Float32Array; shape: readonly number[] },
  tiling: { tile: number; overlap: number; inScale: number; outScale: number; outChannels: number },
  forward: (tile: Tensor) => Promise<Float32Array>,
): Promise<Float64Array> {
  const [batch, channels, H, W] = input.shape as [number, number, number, number];
  const { inScale, outScale: s, outChannels } = tiling;
  const [h, w] = [H / inScale, W / inScale];
  const out = new Float64Array(batch * outChannels * h * s * w * s);
  const rows = tileSpans(h, tiling.tile, tiling.overlap);
  const cols = tileSpans(w, tiling.tile, tiling.overlap);
  // Per axis, each output pixel's weight in each tile: 1 inside, linear across its overlaps.
  const axisWeights = (spans: typeof rows, length: number) =>
    spans.map((span, k) =>
      Array.from({ length: span.size * s }, (_, p) => {
        const at = span.start * s + p;
        const prev = spans[k - 1];
        const next = spans[k + 1];
        let wgt = 1;
        if (prev && at < (prev.start + prev.size) * s) wgt = (at - span.start * s) / ((prev.start + prev.size - span.start) * s);
        if (next && at >= next.start * s) wgt = Math.min(wgt, 1 - (at - next.start * s) / ((span.start + span.size - next.start) * s));
        expect(at).toBeLessThan(length * s);
        return wgt;
      }),
    );
  const wy = axisWeights(rows, h);
  const wx = axisWeights(cols, w);
  for (const [i, row] of rows.entries()) {
    for (const [j, col] of cols.entries()) {
      const [ch, cw] = [row.size * inScale, col.size * inScale];
      const crop = new Float32Array(batch * channels * ch * cw);
      let k = 0;
      for (let b = 0; b < batch; b++) for (let c = 0; c < channels; c++) for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) {
        crop[k++] = input.data[((b * channels + c) * H + row.start * inScale + y) * W + col.start * inScale + x]!;
      }
      const t = Tensor.upload(gpu, crop, 'f32', [batch, channels, ch, cw], 'f32');
      const v = await forward(t);
      t.release();
      const [th, tw] = [row.size * s, col.size * s];
      for (let b = 0; b < batch; b++) for (let c = 0; c < outChannels; c++) for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
        out[((b * outChannels + c) * h * s + row.start * s + y) * w * s + col.start * s + x]! += wy[i]![y]! * wx[j]![x]! * v[((b * outChannels + c) * th + y) * tw + x]!;
      }
    }
  }
  return out;
}

describe('tiled decode', () => {
  let vae: AutoencoderKL;
  beforeAll(async () => {
    vae = await loadVae(await testGpu(), 'diffusion_pytorch_model.safetensors', 'f32');
  });

  /** The tiled image a CPU assembles from untiled decodes of each tile (cpuBlend). */
  const cpuDecode = (gpu: Gpu, latents: { data: Float32Array; shape: readonly number[] }, tile: number, overlap: number): Promise<Float64Array> =>
    cpuBlend(gpu, latents, { tile, overlap, inScale: 1, outScale: 8, outChannels: 3 }, async (z) => {
      const decoded = vae.decode(z);
      const v = await decoded.read();
      decoded.release();
      return v;
    });

  it('equals the CPU blend of its own tiles and stays close to the untiled decode (2×2 and 3×3 tiles)', async () => {
    const gpu = await testGpu();
    const latentsRef = ref(reference, 'decode.latents'); // (1, 4, 8, 8)
    const latents = upload(gpu, 'decode.latents', 'f32');
    const untiled = vae.decode(latents);
    const whole = await untiled.read();
    untiled.release();
    // (tile, overlap) → 2×2 tiles of 5 overlapping by 2 (16 px), 3×3 tiles of 4 overlapping by 2.
    for (const [tile, overlap, tiles, bound] of [[5, 1, 2, 0.4], [4, 1, 3, 0.5]] as const) {
      expect(tileSpans(8, tile, overlap)).toHaveLength(tiles);
      poisonPool(gpu, POISON_BYTES, 8);
      const tiled = vae.decodeTiled(latents, { images: 1, tile, overlap });
      expect(tiled.shape).toEqual([1, 3, 64, 64]);
      const v = await tiled.read();
      tiled.release();
      // Same tiles, same kernels: only the f32 blend arithmetic differs (≈1e-7).
      const blendError = relL2(v, await cpuDecode(gpu, latentsRef, tile, overlap));
      // Not equal to the untiled decode, by design: each tile's GroupNorms see only that tile's
      // statistics (diffusers' tiled_decode has the same property), and tile borders see zero
      // padding instead of their neighbours. Tiles of 4–5 latent pixels are the worst case
      // (automatic tiles are ≥ 8, at real size ≈ 40): observed 0.33 (2×2) and 0.44 (3×3),
      // against 0.65 for 2×2 tiles added without their ramps.
      const tilingError = relL2(v, whole);
      console.log(`tiled decode, ${tiles}×${tiles} tiles of ${tile} (overlap ≥ ${overlap}): vs CPU blend ${blendError.toExponential(2)}, vs untiled ${tilingError.toExponential(2)}`);
      expect(blendError).toBeLessThan(1e-6);
      expect(tilingError).toBeLessThan(bound);
    }
    latents.release();
  });

  it('splitting a batch into passes of whole images is exact', async () => {
    const gpu = await testGpu();
    const shape = [3, 4, 6, 10];
    const latents = Tensor.upload(gpu, randn(rng(23), 3 * 4 * 6 * 10, 4), 'f32', shape, 'f32');
    const untiled = vae.decode(latents);
    poisonPool(gpu, POISON_BYTES, 8);
    const passes = vae.decodeTiled(latents, { images: 2, tile: 10, overlap: 0 });
    expect(passes.shape).toEqual([3, 3, 48, 80]);
    // Per-image GroupNorm statistics and the same kernels: only the batch of each dispatch
    // changes (f32 rounding identical per image, 1e-6 leaves room for none of a tile's error).
    expect(relL2(await passes.read(), await untiled.read())).toBeLessThan(1e-6);
    for (const t of [latents, untiled, passes]) t.release();
  });

  it('decode() stays untiled past the storage binding limit: the ops split their bindings', async () => {
    const gpu = await testGpu();
    const latents = upload(gpu, 'decode.latents', 'f32');
    const normal = vae.decode(latents);
    // 64 KiB bindings (a device opened with that limit): the 512 KiB upsampled activation, and
    // every (1, 16 or 32, 64, 64) one, go through conv2d's channel chunks and the norms' and
    // elementwise ops' windows.
    const small = await gpuWithBindingLimit(64 * 1024);
    const smallVae = await loadVae(small, 'diffusion_pytorch_model.safetensors', 'f32');
    const smallLatents = upload(small, 'decode.latents', 'f32');
    poisonPool(small, POISON_BYTES, 8);
    const windowed = smallVae.decode(smallLatents);
    // Same arithmetic but for conv2d's input-channel chunks accumulated in the output (f32
    // summation order only: ≈1e-7).
    expect(relL2(await windowed.read(), await normal.read())).toBeLessThan(1e-6);
    for (const t of [latents, normal, smallLatents, windowed]) t.release();
  });

  it('decode() tiles by itself when an activation would exceed maxActivationBytes', async () => {
    const gpu = await testGpu();
    const shape = [1, 4, 12, 16];
    const latents = Tensor.upload(gpu, randn(rng(29), 4 * 12 * 16, 4), 'f32', shape, 'f32');
    // The tiny decoder's largest activation is 1024 values per latent pixel (16 channels at 8×8
    // pixels each): a 12×16 latent needs 768 KiB; tiles of 9 fit a 384 KiB pool buffer.
    const build = () => AutoencoderKL.create(config);
    const probe = new VaeProbe('decode', build, 'f32');
    const need = probe.largestBuffer(1, 12, 16);
    expect(need).toBe(12 * 16 * 1024 * 4);
    const limit = probe.largestBuffer(1, 9, 9);
    expect(limit).toBe(sizeClass(9 * 9 * 1024 * 4));
    expect(planVaeTiling('decode', config, shape, 'f32', need, build)).toBeNull();
    const plan = planVaeTiling('decode', config, shape, 'f32', limit, build);
    expect(plan).toEqual({ images: 1, tile: 9, overlap: 2 });
    vae.maxActivationBytes = limit;
    const auto = vae.decode(latents);
    expect(() => vae.decode(latents, () => {})).toThrow(/hooks observe untiled decodes only/);
    vae.maxActivationBytes = null;
    const explicit = vae.decodeTiled(latents, plan!);
    expect(await auto.read()).toEqual(await explicit.read()); // same plan, same kernels: identical
    const untiled = vae.decode(latents);
    expect(relL2(await auto.read(), await untiled.read())).toBeGreaterThan(1e-3); // it really tiled
    // Batches split into whole images before any image is tiled.
    expect(planVaeTiling('decode', config, [5, 4, 12, 16], 'f32', 2 * need, build)).toEqual({ images: 2, tile: 16, overlap: 0 });
    expect(() => planVaeTiling('decode', config, shape, 'f32', 1000, build)).toThrow(/even 8×8 latent tiles need 262144-byte activations, over the 1000-byte limit/);
    for (const t of [latents, auto, explicit, untiled]) t.release();
  });
});

describe('tiled encode', () => {
  let vae: AutoencoderKL;
  beforeAll(async () => {
    vae = await loadVae(await testGpu(), 'diffusion_pytorch_model.safetensors', 'f32');
  });

  /** The tiled posterior a CPU assembles in float64: the untiled encoder's moments of each tile
   *  blended (cpuBlend), then diffusers' DiagonalGaussian (logvar clamped to [−30, 20]). */
  async function cpuEncode(gpu: Gpu, picture: { data: Float32Array; shape: readonly number[] }, tile: number, overlap: number) {
    const moments = await cpuBlend(gpu, picture, { tile, overlap, inScale: 8, outScale: 1, outChannels: 8 }, async (x) => {
      const m = vae.encodeMoments(x, null);
      const v = await m.read();
      m.release();
      return v;
    });
    const [batch, , H, W] = picture.shape as [number, number, number, number];
    const n = 4 * (H / 8) * (W / 8); // one image's values per half of the moments
    const part = (b: number, half: number) => moments.subarray((2 * b + half) * n, (2 * b + half + 1) * n);
    const mean = new Float64Array(batch * n);
    const logvar = new Float64Array(batch * n);
    for (let b = 0; b < batch; b++) {
      mean.set(part(b, 0), b * n);
      logvar.set(part(b, 1).map((v) => Math.min(Math.max(v, -30), 20)), b * n);
    }
    return { mean, logvar, std: logvar.map((v) => Math.exp(v / 2)) };
  }

  /** The fixture's 64×64 picture, or it upsampled 2× (nearest) to 128×128 for larger tiles. */
  function picture(upsample: 1 | 2): { data: Float32Array; shape: readonly number[] } {
    const p = ref(reference, 'encode.image'); // (1, 3, 64, 64)
    if (upsample === 1) return p;
    const data = new Float32Array(3 * 128 * 128);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 128; y++) for (let x = 0; x < 128; x++) data[(c * 128 + y) * 128 + x] = p.data[(c * 64 + (y >> 1)) * 64 + (x >> 1)]!;
    return { data, shape: [1, 3, 128, 128] };
  }

  it('equals a float64 CPU blend of its own tiles and stays within a bound of the untiled encode', async () => {
    const gpu = await testGpu();
    // (picture upsampling, tile, overlap, tiles per side, bound on the mean's relative L2 to the
    // untiled encode; see below): 2×2 tiles of 5 and 3×3 of 4 latent px on the 64² picture, 2×2
    // of 9 on the 128² one. Observed 0.58, 0.68 and 0.62.
    const cases = [[1, 5, 1, 2, 0.7], [1, 4, 1, 3, 0.8], [2, 10, 2, 2, 0.7]] as const;
    for (const [upsample, tile, overlap, tiles, bound] of cases) {
      const p = picture(upsample);
      const image = Tensor.upload(gpu, p.data, 'f32', p.shape, 'f32');
      const side = p.shape[2]! / 8;
      expect(tileSpans(side, tile, overlap)).toHaveLength(tiles);
      const untiled = vae.encode(image);
      poisonPool(gpu, POISON_BYTES, 8);
      const tiled = vae.encodeTiled(image, { images: 1, tile, overlap });
      expect(tiled.mean.shape).toEqual([1, 4, side, side]);
      const cpu = await cpuEncode(gpu, p, tile, overlap);
      const errors = new Map<string, { blend: number; tiling: number }>();
      for (const part of ['mean', 'logvar', 'std'] as const) {
        const v = await tiled[part].read();
        errors.set(part, { blend: relL2(v, cpu[part]), tiling: relL2(v, await untiled[part].read()) });
      }
      console.log(`tiled encode, ${p.shape[2]}² picture, ${tiles}×${tiles} tiles of ${tile} latent px (overlap ≥ ${overlap}): vs untiled ${[...errors].map(([k, e]) => `${k} ${e.tiling.toExponential(2)} (vs CPU blend ${e.blend.toExponential(2)})`).join(', ')}`);
      // Same tiles through the same kernels: only the f32 blend (and exp) arithmetic differs
      // from float64 (≈1e-7 relative; 1e-6 leaves no room for a misplaced ramp or tile).
      for (const [part, e] of errors) expect(e.blend, `${part}: tiled vs its CPU blend`).toBeLessThan(1e-6);
      // Not equal to the untiled encode, by design: each tile's GroupNorms and mid-block
      // attention see only that tile (diffusers' tiled_encode has the same property), and tile
      // borders see zero padding instead of their neighbours. The mean is what the latents are
      // built from. The tiny fixture's random weights make it large (its 4-group GroupNorms and
      // mid-block attention carry whole-image statistics into every latent; the decode's like
      // bound is 0.4–0.5). The bounds sit 0.1 over the observed values: they are deterministic
      // here and another adapter changes only summation order (≈1e-6), so a growth of the tiling
      // error fails; the CPU blend above pins the blending itself.
      expect(errors.get('mean')!.tiling, `${tiles}×${tiles} tiles of ${tile}`).toBeLessThan(bound);
      for (const t of [image, untiled.mean, untiled.logvar, untiled.std, tiled.mean, tiled.logvar, tiled.std]) t.release();
    }
  });

  it('splitting a batch into passes of whole images is exact', async () => {
    const gpu = await testGpu();
    const image = Tensor.upload(gpu, randn(rng(31), 3 * 3 * 48 * 80), 'f32', [3, 3, 48, 80], 'f32');
    const untiled = vae.encode(image);
    poisonPool(gpu, POISON_BYTES, 8);
    const passes = vae.encodeTiled(image, { images: 2, tile: 10, overlap: 0 });
    expect(passes.mean.shape).toEqual([3, 4, 6, 10]);
    // Per-image GroupNorm statistics and the same kernels: only each dispatch's batch changes.
    for (const part of ['mean', 'logvar', 'std'] as const) expect(relL2(await passes[part].read(), await untiled[part].read()), part).toBeLessThan(1e-6);
    for (const t of [image, untiled.mean, untiled.logvar, untiled.std, passes.mean, passes.logvar, passes.std]) t.release();
  });

  it('encode() tiles by itself when an activation would exceed maxEncodeActivationBytes', async () => {
    const gpu = await testGpu();
    const image = Tensor.upload(gpu, randn(rng(37), 3 * 96 * 128), 'f32', [1, 3, 96, 128], 'f32');
    const build = () => AutoencoderKL.create(config);
    const probe = new VaeProbe('encode', build, 'f32');
    // The tiny encoder's largest activation: its first level's 8 channels at full resolution
    // (conv_in, the resnets), 512 values per latent pixel; a 12×16 latent needs 384 KiB.
    const need = probe.largestBuffer(1, 12, 16);
    expect(need).toBe(sizeClass(12 * 16 * 512 * 4));
    const limit = probe.largestBuffer(1, 9, 9);
    const shape = [1, 4, 12, 16];
    expect(planVaeTiling('encode', config, shape, 'f32', need, build)).toBeNull();
    const plan = planVaeTiling('encode', config, shape, 'f32', limit, build)!;
    expect(plan.images).toBe(1);
    expect(plan.tile).toBeGreaterThanOrEqual(9);
    expect(plan.tile).toBeLessThan(16);
    expect(plan.overlap).toBe(Math.floor(plan.tile / 4));
    vae.maxEncodeActivationBytes = limit;
    const auto = vae.encode(image);
    expect(() => vae.encode(image, () => {})).toThrow(/hooks observe untiled encodes only/);
    vae.maxEncodeActivationBytes = null;
    const explicit = vae.encodeTiled(image, plan);
    expect(await auto.mean.read()).toEqual(await explicit.mean.read()); // same plan, same kernels: identical
    const untiled = vae.encode(image);
    expect(relL2(await auto.mean.read(), await untiled.mean.read())).toBeGreaterThan(1e-3); // it really tiled
    expect(() => planVaeTiling('encode', config, shape, 'f32', 1000, build)).toThrow(/AutoencoderKL\.encode: even 8×8 latent tiles need \d+-byte activations, over the 1000-byte limit/);
    for (const t of [image, auto.mean, auto.logvar, auto.std, explicit.mean, explicit.logvar, explicit.std, untiled.mean, untiled.logvar, untiled.std]) t.release();
  });
});
