// Binding windows: a storage binding over a range of a tensor's elements, for ops that must
// split a dispatch because a tensor exceeds maxStorageBufferBindingSize. Binding offsets must
// be multiples of minStorageBufferOffsetAlignment, so the window starts at the aligned byte
// at or below the first element and the kernel adds `base` (elements) to its indices.

import type { Gpu } from '../gpu/runtime.js';
import { bytesPerElement, type DType, type Tensor } from '../tensor.js';

export interface BindingWindow {
  readonly binding: GPUBufferBinding;
  /** Index of element `start` inside the window. */
  readonly base: number;
}

function windowBytes(gpu: Gpu, dtype: DType, start: number, count: number): { offset: number; size: number } {
  const bpe = bytesPerElement(dtype);
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const offset = Math.floor((start * bpe) / align) * align;
  const end = Math.ceil(((start + count) * bpe) / 4) * 4; // bindings are whole 4-byte words
  return { offset, size: end - offset };
}

/** Whether elements [start, start + count) of a `dtype` tensor fit one binding. */
export function windowFits(gpu: Gpu, dtype: DType, start: number, count: number): boolean {
  return windowBytes(gpu, dtype, start, count).size <= gpu.limits.maxStorageBufferBindingSize;
}

/** The binding over elements [start, start + count) of `t`; `op` names the caller in errors. */
export function bindingWindow(op: string, t: Tensor, start: number, count: number): BindingWindow {
  if (start < 0 || count < 0 || start + count > t.size) throw new Error(`${op}: window [${start}, ${start + count}) outside a tensor of ${t.size} elements`);
  const { offset, size } = windowBytes(t.gpu, t.dtype, start, count);
  const limit = t.gpu.limits.maxStorageBufferBindingSize;
  if (size > limit) throw new Error(`${op}: a ${size}-byte binding exceeds maxStorageBufferBindingSize (${limit})`);
  return { binding: { buffer: t.buffer, offset, size }, base: start - offset / bytesPerElement(t.dtype) };
}

/** The largest n ≤ `max` for which `fits(n)` holds (0 if none); `fits` must be monotone. */
export function largestFitting(max: number, fits: (n: number) => boolean): number {
  let lo = 0;
  let hi = max;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
