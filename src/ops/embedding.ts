// Embeddings of the elementwise family: row gather (kernels/embedding.wgsl) and diffusers'
// sinusoidal timestep embedding (kernels/timestep.wgsl).

import embeddingSource from '../../kernels/embedding.wgsl';
import timestepSource from '../../kernels/timestep.wgsl';
import { fmaf } from '../float32.js';
import { defineKernel } from '../gpu/pipeline-cache.js';
import type { Gpu } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, type DType, formatShape, Tensor } from '../tensor.js';
import { alignedWindows, windowBinding } from './aligned-windows.js';
import { commonDtype, grid256, vectorDefines } from './common.js';

const embeddingLayout = uniforms(['n', 'u32'], ['cols', 'u32'], ['rowStart', 'u32'], ['rowCount', 'u32'], ['vocab', 'u32']);
const embeddingKernel = defineKernel('embedding', embeddingSource, embeddingLayout);

/**
 * Rows of `table` (V, C): `ids` on the host (Int32Array of length L → (L, C)), or on the GPU
 * as an f32 tensor of integer ids (shape S → (...S, C); an id outside 0..V−1 gives a zero
 * row). A table over the binding limit (bigG's 49408×1280 f32 is 253 MB) is bound in row
 * windows; host ids skip the windows none of them falls in.
 */
export function embedding(table: Tensor, ids: Int32Array | Tensor): Tensor {
  const dtype = commonDtype('embedding', table);
  if (table.shape.length !== 2) throw new Error(`embedding: table must be (V, C), got ${formatShape(table.shape)}`);
  const [vocab, c] = table.shape as [number, number];
  const gpu = table.gpu;
  let idTensor: Tensor;
  if (ids instanceof Int32Array) {
    const bad = ids.findIndex((id) => id < 0 || id >= vocab);
    if (bad >= 0) throw new Error(`embedding: id ${ids[bad]} at ${bad} outside the table's rows 0..${vocab - 1}`);
    // Float ids are exact far beyond any vocabulary (2^24), and f32 is a Tensor dtype.
    idTensor = Tensor.upload(gpu, Float32Array.from(ids), 'f32', [ids.length], 'f32', { label: 'embedding ids' });
  } else {
    if (ids.dtype !== 'f32') throw new Error(`embedding: id tensors hold integers as f32, got ${ids.dtype}`);
    idTensor = ids;
  }
  const out = Tensor.empty(gpu, [...idTensor.shape, c], dtype, 'embedding');
  const width = c % 4 === 0 ? 4 : 1;
  const n = (idTensor.size * c) / width;
  for (const w of alignedWindows('embedding', gpu, vocab, [c * bytesPerElement(dtype)])) {
    if (ids instanceof Int32Array && !ids.some((id) => id >= w.start && id < w.start + w.count)) continue;
    gpu.dispatch({
      kernel: embeddingKernel,
      defines: vectorDefines(dtype, width),
      layout: embeddingLayout,
      uniforms: { n, cols: c / width, rowStart: w.start, rowCount: w.count, vocab },
      bindings: [idTensor.binding, windowBinding('embedding', table, w, c), out.binding],
      workgroups: grid256(n),
    });
  }
  if (idTensor !== ids) idTensor.release();
  return out;
}

const timestepLayout = uniforms(['n', 'u32'], ['dim', 'u32'], ['half', 'u32'], ['flip', 'u32']);
const timestepKernel = defineKernel('timestep', timestepSource, timestepLayout);

export interface TimestepEmbeddingOptions {
  /** [cos, sin] instead of [sin, cos] (the UNet's time_proj and add_time_proj: true). */
  readonly flipSinToCos: boolean;
  /** diffusers' downscale_freq_shift (SDXL: 0). */
  readonly freqShift: number;
  /** Output dtype (default f32). */
  readonly dtype?: DType;
}

/** `t` (N) f32 timesteps → (N, dim), exactly as diffusers' get_timestep_embedding with
 *  max_period 10000 and scale 1. */
export function timestepEmbedding(t: Tensor, dim: number, options: TimestepEmbeddingOptions): Tensor {
  const dtype = options.dtype ?? 'f32';
  if (t.dtype !== 'f32' || t.shape.length !== 1) throw new Error(`timestepEmbedding: t must be an f32 vector, got ${t.dtype} ${formatShape(t.shape)}`);
  if (dtype === 'f16' && !t.gpu.f16) throw new Error('timestepEmbedding: f16 output needs the shader-f16 feature, which this device lacks');
  if (!Number.isInteger(dim) || dim < 2) throw new Error(`timestepEmbedding: dim ${dim} must be an integer ≥ 2`);
  const half = Math.floor(dim / 2);
  if (half - options.freqShift <= 0) throw new Error(`timestepEmbedding: freqShift ${options.freqShift} must be below dim / 2 = ${half}`);
  const out = Tensor.empty(t.gpu, [t.size, dim], dtype, 'timestepEmbedding');
  t.gpu.dispatch({
    kernel: timestepKernel,
    defines: { T: dtype },
    layout: timestepLayout,
    uniforms: { n: t.size * dim, dim, half, flip: options.flipSinToCos ? 1 : 0 },
    bindings: [t.binding, frequencies(t.gpu, half, options.freqShift).binding, out.binding],
    workgroups: grid256(t.size * dim),
  });
  return out;
}

const frequencyTables = new WeakMap<Gpu, Map<string, Tensor>>();

/**
 * exp(−ln(10000)·k / (half − shift)) for k < half, rounded at every step as PyTorch's
 * float32 CPU ops round, so t·freq matches diffusers' argument bit for bit (one ulp of a
 * frequency moves sin(999·freq) by up to 8e-5). Uploaded once per device and kept: a few
 * hundred bytes that every denoising step reuses.
 */
function frequencies(gpu: Gpu, half: number, shift: number): Tensor {
  const key = `${half}/${shift}`;
  let tables = frequencyTables.get(gpu);
  if (!tables) frequencyTables.set(gpu, (tables = new Map()));
  let table = tables.get(key);
  if (!table) {
    const scale = f(-Math.log(10000));
    const values = Float32Array.from({ length: half }, (_, k) => torchExpf(f(f(scale * k) / f(half - shift))));
    table = Tensor.upload(gpu, values, 'f32', [values.length], 'f32', { label: 'timestep frequencies', exact: true });
    tables.set(key, table);
  }
  return table;
}

const f = Math.fround;

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
