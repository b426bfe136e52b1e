// Test plumbing for ops: inputs with the values they really hold, poisoning the pooled buffer
// an op will receive, and devices with a small binding limit so split dispatches run at test
// sizes.

import { afterAll } from 'vitest';
import { openNodeGpu } from '../../src/gpu/node.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { uploadAs } from '../../src/ops/cast.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { roundToF16 } from '../reference/cast.js';
import { randn, rng } from './gpu.js';

/** A `dtype` tensor of `values`, and the values it really holds (rounded to f16 for f16). */
export function input(gpu: Gpu, values: Float32Array, shape: readonly number[], dtype: DType): { t: Tensor; v: Float32Array } {
  return { t: uploadAs(gpu, values, 'f32', shape, dtype), v: dtype === 'f16' ? roundToF16(values) : values };
}

/**
 * Fills a pooled buffer of `shape`'s size class with NaN and hands it back to the pool, which
 * gives it to the next allocation of that class (the op's output). Returns the buffer so the
 * test can check `out.buffer === poisoned`, i.e. that the poison really landed.
 */
export function poisonNextOutput(gpu: Gpu, shape: readonly number[], dtype: DType): GPUBuffer {
  return poisonPooled(gpu, shape, dtype, 1)[0]!;
}

/** `count` NaN buffers of `shape`'s size class idle in the pool at once: for ops with several
 *  outputs, or that allocate a temporary of the class before their output. */
export function poisonPooled(gpu: Gpu, shape: readonly number[], dtype: DType, count: number): GPUBuffer[] {
  const tensors = Array.from({ length: count }, () => Tensor.empty(gpu, shape, dtype, 'poison'));
  for (const t of tensors) t.fill(NaN);
  const buffers = tensors.map((t) => t.buffer);
  for (const t of tensors) t.release();
  return buffers;
}

const limited = new Map<number, Promise<Gpu>>();

/**
 * A device whose ops see `maxStorageBufferBindingSize = bytes` (GpuOptions.maxStorageBindingBytes),
 * so splitting over binding windows is exercised without 128 MiB tensors; one per limit and
 * test file, disposed after the file's tests. Tensors must be uploaded on it.
 */
export function gpuWithBindingLimit(bytes: number): Promise<Gpu> {
  let gpu = limited.get(bytes);
  if (!gpu) {
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    const opened = openNodeGpu({ maxStorageBindingBytes: bytes });
    limited.set(bytes, (gpu = opened));
    afterAll(async () => (await opened).dispose());
  }
  return gpu;
}

export interface AffineInputs {
  xs: Float32Array;
  x: Tensor;
  gs: Float32Array;
  g: Tensor;
  bs: Float32Array;
  b: Tensor;
}

/** Inputs of a norm: x ~ N(mean, std²); gamma ~ 1 + N(0, 0.15²), beta ~ N(0, 0.1²) as in the synthetic SDXL weights. */
export function affineInputs(gpu: Gpu, dtype: DType, shape: readonly number[], channels: number, seed: number, mean: number, std: number): AffineInputs {
  const random = rng(seed);
  const round = (v: Float32Array): Float32Array => (dtype === 'f16' ? roundToF16(v) : v);
  const xs = round(randn(random, shape.reduce((a, b) => a * b, 1), std).map((v) => v + mean));
  const gs = round(randn(random, channels, 0.15).map((v) => v + 1));
  const bs = round(randn(random, channels, 0.1));
  return {
    xs, gs, bs,
    x: uploadAs(gpu, xs, 'f32', shape, dtype),
    g: uploadAs(gpu, gs, 'f32', [channels], dtype),
    b: uploadAs(gpu, bs, 'f32', [channels], dtype),
  };
}
