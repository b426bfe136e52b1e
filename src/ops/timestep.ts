// diffusers' sinusoidal timestep embedding (kernels/timestep.wgsl). The frequency table is an
// input: timestepFrequencies gives its values, and the caller uploads it once and owns it
// (src/models/blocks/embeddings.ts), so the op keeps no per-device state.

import source from '../../kernels/timestep.wgsl';
import { fmaf } from '../float32.js';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { type DType, formatShape, Tensor } from '../tensor.js';
import { grid, WG } from './common.js';
import { bindWhole } from './windows.js';

const kernel = defineKernel({
  name: 'timestep',
  source,
  layout: uniforms(['n', 'u32'], ['dim', 'u32'], ['half', 'u32'], ['flip', 'u32']),
  constants: { WG },
});

export interface TimestepEmbeddingOptions {
  /** [cos, sin] instead of [sin, cos] (the UNet's time_proj and add_time_proj: true). */
  readonly flipSinToCos: boolean;
  /** Output dtype (default f32). */
  readonly dtype?: DType;
}

/**
 * `t` (N) f32 timesteps → (N, dim), exactly as diffusers' get_timestep_embedding with
 * max_period 10000 and scale 1; `frequencies` (⌊dim / 2⌋) f32 holds
 * timestepFrequencies(⌊dim / 2⌋, downscale_freq_shift).
 */
export function timestepEmbedding(t: Tensor, frequencies: Tensor, dim: number, options: TimestepEmbeddingOptions): Tensor {
  const dtype = options.dtype ?? 'f32';
  if (t.dtype !== 'f32' || t.shape.length !== 1) throw new Error(`timestepEmbedding: t must be an f32 vector, got ${t.dtype} ${formatShape(t.shape)}`);
  if (dtype === 'f16' && !t.gpu.f16) throw new Error('timestepEmbedding: f16 output needs the shader-f16 feature, which this device lacks');
  if (!Number.isInteger(dim) || dim < 2) throw new Error(`timestepEmbedding: dim ${dim} must be an integer ≥ 2`);
  const half = Math.floor(dim / 2);
  if (frequencies.dtype !== 'f32' || frequencies.shape.length !== 1 || frequencies.shape[0] !== half) {
    throw new Error(`timestepEmbedding: frequencies must be (${half}) f32 for dim ${dim}, got ${frequencies.dtype} ${formatShape(frequencies.shape)}`);
  }
  const out = Tensor.empty(t.gpu, [t.size, dim], dtype, 'timestepEmbedding');
  t.gpu.dispatch({
    kernel,
    defines: { T: dtype },
    uniforms: { n: t.size * dim, dim, half, flip: options.flipSinToCos ? 1 : 0 },
    bindings: [bindWhole('timestepEmbedding t', t), bindWhole('timestepEmbedding frequencies', frequencies), bindWhole('timestepEmbedding', out)],
    workgroups: grid(t.size * dim),
  });
  return out;
}

const f = Math.fround;

/**
 * exp(−ln(10000)·k / (half − shift)) for k < half, rounded at every step as PyTorch's
 * float32 CPU ops round, so t·freq matches diffusers' argument bit for bit (one ulp of a
 * frequency moves sin(999·freq) by up to 8e-5). `shift` is diffusers' downscale_freq_shift.
 */
export function timestepFrequencies(half: number, shift: number): Float32Array {
  if (!Number.isInteger(half) || half < 1 || half - shift <= 0) throw new Error(`timestepFrequencies: shift ${shift} must be below half = ${half}`);
  const scale = f(-Math.log(10000));
  return Float32Array.from({ length: half }, (_, k) => torchExpf(f(f(scale * k) / f(half - shift))));
}

/**
 * e^d for float32 d in [−104, 88] as PyTorch's CPU exp computes it: SLEEF's expf_u10 with
 * FMA (AVX2 kernels). It is within 1 ulp but not always the nearest float — for 6 of SDXL's
 * 160 time_proj frequencies it is the other neighbour — and the reference depends on which.
 */
export function torchExpf(d: number): number {
  const x = f(d * f(Math.LOG2E));
  let q = Math.round(x);
  if (Math.abs(x % 1) === 0.5 && q % 2 !== 0) q -= 1; // rint: ties to even
  let s = fmaf(q, -0.693145751953125, d);
  s = fmaf(q, f(-1.428606765330187045e-6), s);
  let u = f(1.98527617612853646278381e-4);
  for (const c of [1.39304355252534151077271e-3, 8.33336077630519866943359e-3, 4.16664853692054748535156e-2, 1.66666671633720397949219e-1, 0.5]) {
    u = fmaf(u, s, f(c));
  }
  return f(f(1 + fmaf(f(s * s), u, s)) * 2 ** q);
}
