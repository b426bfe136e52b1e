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

describe('tiled decode', () => {
  let vae: AutoencoderKL;
  beforeAll(async () => {
    vae = await loadVae(await testGpu(), 'diffusion_pytorch_model.safetensors', 'f32');
  });

  /** The tiled image a CPU assembles from untiled decodes of each tile: diffusers' blend
   *  weights (the new tile's weight rising as y / overlap across each overlap). */
  async function cpuBlend(gpu: Gpu, latents: { data: Float32Array; shape: readonly number[] }, tile: number, overlap: number): Promise<Float64Array> {
    const [batch, channels, h, w] = latents.shape as [number, number, number, number];
    const s = 8;
    const out = new Float64Array(batch * 3 * h * s * w * s);
    const rows = tileSpans(h, tile, overlap);
    const cols = tileSpans(w, tile, overlap);
    // Per axis, each pixel's weight in each tile: 1 inside, linear across its overlaps.
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
        const crop = new Float32Array(batch * channels * row.size * col.size);
        let k = 0;
        for (let b = 0; b < batch; b++) for (let c = 0; c < channels; c++) for (let y = 0; y < row.size; y++) for (let x = 0; x < col.size; x++) {
          crop[k++] = latents.data[((b * channels + c) * h + row.start + y) * w + col.start + x]!;
        }
        const z = Tensor.upload(gpu, crop, 'f32', [batch, channels, row.size, col.size], 'f32');
        const decoded = vae.decode(z);
        const v = await decoded.read();
        z.release();
        decoded.release();
        const [th, tw] = [row.size * s, col.size * s];
        for (let b = 0; b < batch; b++) for (let c = 0; c < 3; c++) for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
          out[((b * 3 + c) * h * s + row.start * s + y) * w * s + col.start * s + x]! += wy[i]![y]! * wx[j]![x]! * v[((b * 3 + c) * th + y) * tw + x]!;
        }
      }
    }
    return out;
  }

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
      const blendError = relL2(v, await cpuBlend(gpu, latentsRef, tile, overlap));
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
