// Binding-limit splits, for every op: tensors larger than one storage binding
// (limits.maxStorageBufferBindingSize, capped by GpuOptions.maxStorageBindingBytes) are bound
// one window at a time, one dispatch per window. Two kinds of window:
// - element windows (bindWindow): elements [start, start + count) bound from the aligned
//   offset at or below `start`; the kernel adds the returned `base` to its indices. Planned
//   with splitWindows / largestFitting over whatever unit the op walks (rows, chunks, images).
// - aligned windows (alignedWindows): whole units starting 256-byte aligned in every tensor
//   bound per window, so kernels index each window from zero.
// A tensor an op never splits is bound whole with bindWhole, which reports one over the limit.

import type { Gpu } from '../gpu/runtime.js';
import { bytesPerElement, type DType, formatShape, type Tensor } from '../tensor.js';

/** minStorageBufferOffsetAlignment is a power of two of at most 256. */
const OFFSET_ALIGN = 256;

export interface BindingWindow {
  readonly binding: GPUBufferBinding;
  /** Index of element `start` inside the binding. */
  readonly base: number;
}

/** Units [start, start + count) of an op's work. */
export interface Window {
  readonly start: number;
  readonly count: number;
}

export interface WindowOptions {
  /** Widen the binding to whole 16 bytes: the kernel declares the tensor `array<vec4<T>>`,
   *  whose length WGSL rounds down (pooled and exact buffers are 16-byte multiples). */
  readonly vec4?: boolean;
}

export function bindingLimit(gpu: Gpu): number {
  return gpu.limits.maxStorageBufferBindingSize;
}

function windowBytes(gpu: Gpu, dtype: DType, start: number, count: number, options: WindowOptions): { offset: number; size: number } {
  const bpe = bytesPerElement(dtype);
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const offset = Math.floor((start * bpe) / align) * align;
  const word = options.vec4 ? 16 : 4; // bindings are whole 4-byte words
  const end = Math.ceil(((start + count) * bpe) / word) * word;
  return { offset, size: end - offset };
}

/** Whether elements [start, start + count) of a `dtype` tensor fit one binding. */
export function windowFits(gpu: Gpu, dtype: DType, start: number, count: number, options: WindowOptions = {}): boolean {
  return windowBytes(gpu, dtype, start, count, options).size <= bindingLimit(gpu);
}

/** The binding over elements [start, start + count) of `t`; `op` names the caller in errors. */
export function bindWindow(op: string, t: Tensor, start: number, count: number, options: WindowOptions = {}): BindingWindow {
  if (start < 0 || count < 0 || start + count > t.size) throw new Error(`${op}: window [${start}, ${start + count}) outside a tensor of ${t.size} elements`);
  const { offset, size } = windowBytes(t.gpu, t.dtype, start, count, options);
  const limit = bindingLimit(t.gpu);
  if (size > limit) throw new Error(`${op}: a ${size}-byte binding exceeds maxStorageBufferBindingSize (${limit})`);
  return { binding: { buffer: t.buffer, offset, size: Math.min(size, t.buffer.size - offset) }, base: start - offset / bytesPerElement(t.dtype) };
}

/** `t` bound whole; a clear error when it exceeds the binding limit. */
export function bindWhole(op: string, t: Tensor, options: WindowOptions = {}): GPUBufferBinding {
  const limit = bindingLimit(t.gpu);
  if (windowBytes(t.gpu, t.dtype, 0, t.size, options).size > limit) {
    throw new Error(`${op}: ${t.dtype} tensor ${formatShape(t.shape)} is ${t.byteLength} bytes, over this device's ${limit}-byte storage binding limit`);
  }
  return options.vec4 ? bindWindow(op, t, 0, t.size, options).binding : t.binding;
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

/**
 * Splits units [0, total) into consecutive windows, each the largest for which
 * `fits(start, count)` holds (monotone in count); `tooLarge` is the error when one unit
 * does not fit.
 */
export function splitWindows(total: number, fits: (start: number, count: number) => boolean, tooLarge: () => string): Window[] {
  const windows: Window[] = [];
  for (let start = 0; start < total; ) {
    const count = largestFitting(total - start, (n) => fits(start, n));
    if (count === 0) throw new Error(tooLarge());
    windows.push({ start, count });
    start += count;
  }
  return windows;
}

/**
 * Splits `units` into consecutive windows such that, for every tensor bound per window
 * (`unitBytes`: its bytes per unit), `count · bytes` fits one storage binding and
 * `start · bytes` is 256-byte aligned. One window when all fits.
 */
export function alignedWindows(op: string, gpu: Gpu, units: number, unitBytes: readonly number[]): Window[] {
  const limit = bindingLimit(gpu);
  const largest = Math.max(...unitBytes);
  if (units * largest <= limit) return [{ start: 0, count: units }];
  const align = unitBytes.reduce((l, b) => lcm(l, OFFSET_ALIGN / gcd(b, OFFSET_ALIGN)), 1);
  const per = Math.floor(Math.floor(limit / largest) / align) * align;
  if (per === 0) {
    throw new Error(`${op}: cannot split ${units} units of ${largest} bytes into ${limit}-byte bindings at ${OFFSET_ALIGN}-byte offsets`);
  }
  const windows: Window[] = [];
  for (let start = 0; start < units; start += per) windows.push({ start, count: Math.min(per, units - start) });
  return windows;
}

/** The binding of aligned window `w` of `t`, a tensor of `unitElements` elements per unit. */
export function windowBinding(op: string, t: Tensor, w: Window, unitElements: number): GPUBufferBinding {
  return bindWindow(op, t, w.start * unitElements, w.count * unitElements).binding;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}
