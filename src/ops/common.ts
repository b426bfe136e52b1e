// Small helpers the op launchers share: dtype checks, vector-width defines, 1-D grids.

import { foldWorkgroups } from '../gpu/runtime.js';
import type { DType, Tensor } from '../tensor.js';

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

/** Workgroups of 256 invocations covering `invocations`, folded past 65535 per dimension. */
export function grid256(invocations: number): [number, number] {
  return foldWorkgroups(Math.ceil(invocations / 256));
}
