// Reference of kernels/synthetic.wgsl: the CPU definition of the synthetic weights itself
// (src/io/synthetic.ts's element function, float64 then one rounding to binary16), as raw bits,
// so the GPU's output compares bit for bit (signed zeros and subnormals included).

import { f16BitsToF32 } from '../../src/f16.js';
import { synthElement, synthParams } from '../../src/io/synthetic.js';
import type { DType } from '../../src/tensor.js';

/** The bits of elements [begin, end) of tensor `key` of `shape` stored as `dtype`: f16 the
 *  spec's halves, f32 those halves widened (exact). */
export function syntheticBits(key: string, shape: readonly number[], dtype: DType, begin: number, end: number): Uint16Array | Uint32Array {
  const p = synthParams(key, shape);
  const halves = new Uint16Array(end - begin);
  for (let i = begin; i < end; i++) halves[i - begin] = synthElement(p, i);
  if (dtype === 'f16') return halves;
  return new Uint32Array(Float32Array.from(halves, (h) => f16BitsToF32(h)).buffer);
}
