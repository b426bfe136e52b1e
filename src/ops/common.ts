// Small helpers the op launchers share: dtype checks, vector-width defines, 1-D grids.

import { foldWorkgroups } from '../gpu/runtime.js';
import { type DType, formatShape, type Tensor } from '../tensor.js';

/** Invocations per workgroup of the 1-D kernels (their `WG`, a kernel constant): one element
 *  (or vec4) per invocation, the grid folded past 65535 (kernels/include/grid.wgsl). */
export const WG = 256;

/** All `tensors` share one dtype, which the device can compute in; returns it. */
export function commonDtype(op: string, ...tensors: Tensor[]): DType {
  const dtype = tensors[0]!.dtype;
  for (const t of tensors) {
    if (t.dtype !== dtype) throw new Error(`${op}: dtypes differ (${tensors.map((x) => x.dtype).join(', ')})`);
  }
  if (dtype === 'f16' && !tensors[0]!.gpu.f16) throw new Error(`${op}: f16 tensors need the shader-f16 feature, which this device lacks`);
  return dtype;
}

/** WGSL defines for storage `dtype` read `width` (1 or 4) elements at a time: T the scalar
 *  storage type, S the storage element, F the f32 math type of the same width. */
export function vectorDefines(dtype: DType, width: 1 | 4): { T: DType; S: string; F: string } {
  return width === 4 ? { T: dtype, S: `vec4<${dtype}>`, F: 'vec4<f32>' } : { T: dtype, S: dtype, F: 'f32' };
}

/** Workgroups of WG invocations covering `invocations`, folded past 65535 per dimension. */
export function grid(invocations: number): [number, number] {
  return foldWorkgroups(Math.ceil(invocations / WG));
}

/** gamma and beta of a norm are (channels) vectors of x's dtype. */
export function checkAffine(op: string, x: Tensor, gamma: Tensor, beta: Tensor, channels: number): void {
  for (const [name, t] of [['gamma', gamma], ['beta', beta]] as const) {
    if (t.shape.length !== 1 || t.shape[0] !== channels || t.dtype !== x.dtype) {
      throw new Error(`${op}: ${name} ${formatShape(t.shape)} ${t.dtype} must be (${channels}) ${x.dtype} for x ${formatShape(x.shape)}`);
    }
  }
}
