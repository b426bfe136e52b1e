// Test plumbing for ops that allocate their own outputs: poisoning the pooled buffer an op
// will receive, and shrinking the binding limit so split dispatches run at test sizes.

import type { Gpu } from '../../src/gpu/runtime.js';
import { type DType, Tensor } from '../../src/tensor.js';

/**
 * Fills a pooled buffer of `shape`'s size class with NaN and hands it back to the pool, which
 * gives it to the next allocation of that class (the op's output). Returns the buffer so the
 * test can check `out.buffer === poisoned`, i.e. that the poison really landed.
 */
export function poisonNextOutput(gpu: Gpu, shape: readonly number[], dtype: DType): GPUBuffer {
  const t = Tensor.empty(gpu, shape, dtype, 'poison');
  t.fill(NaN);
  const buffer = t.buffer;
  t.release();
  return buffer;
}

/**
 * Runs `fn` while ops see `maxStorageBufferBindingSize = bytes` (the device keeps its real
 * limit), so splitting over binding windows is exercised without 128 MiB tensors. Upload
 * inputs before: uploads split by the same limit.
 */
export async function withBindingLimit<R>(gpu: Gpu, bytes: number, fn: () => R | Promise<R>): Promise<R> {
  const real = gpu.limits;
  const fake: Record<string, unknown> = {};
  for (const key in real) fake[key] = real[key as keyof GPUSupportedLimits];
  fake.maxStorageBufferBindingSize = bytes;
  const writable = gpu as unknown as { limits: GPUSupportedLimits };
  writable.limits = fake as unknown as GPUSupportedLimits;
  try {
    return await fn();
  } finally {
    writable.limits = real;
  }
}
