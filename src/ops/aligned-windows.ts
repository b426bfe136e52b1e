// Splitting an op's work into windows of whole units (elements, rows, planes) that start on
// 256-byte boundaries in every tensor bound per window, so each window is a plain binding
// (binding-window.ts, base 0) and kernels index it from zero. One window when all fits.

import type { Gpu } from '../gpu/runtime.js';
import { formatShape, type Tensor } from '../tensor.js';
import { bindingWindow } from './binding-window.js';

/** minStorageBufferOffsetAlignment is a power of two of at most 256. */
const OFFSET_ALIGN = 256;

export interface Window {
  /** First unit of the window. */
  readonly start: number;
  /** Units in the window. */
  readonly count: number;
}

/**
 * Splits `units` into consecutive windows such that, for every tensor bound per window
 * (`unitBytes`: its bytes per unit), `count · bytes` fits one storage binding and
 * `start · bytes` is 256-byte aligned.
 */
export function alignedWindows(op: string, gpu: Gpu, units: number, unitBytes: readonly number[]): Window[] {
  const limit = gpu.limits.maxStorageBufferBindingSize;
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

/** The binding of window `w` of `t`, a tensor of `unitElements` elements per unit. */
export function windowBinding(op: string, t: Tensor, w: Window, unitElements: number): GPUBufferBinding {
  return bindingWindow(op, t, w.start * unitElements, w.count * unitElements).binding;
}

/** Throws a clear error when `t`, bound whole, exceeds the storage binding limit. */
export function assertBindable(op: string, t: Tensor): void {
  const limit = t.gpu.limits.maxStorageBufferBindingSize;
  if (t.byteLength > limit) {
    throw new Error(`${op}: ${t.dtype} tensor ${formatShape(t.shape)} is ${t.byteLength} bytes, over this device's ${limit}-byte storage binding limit`);
  }
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}
