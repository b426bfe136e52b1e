// Reference of kernels/cast.wgsl: conversions are exact (f16 → f32 and bf16 → f32 widen;
// → f16 rounds to nearest even as src/f16.ts does on the CPU), so results compare exactly.

import { f16ArrayToF32, f32ArrayToF16 } from '../../src/f16.js';

/** The values f32 `values` hold after rounding to f16. */
export const roundToF16 = (values: Float32Array): Float32Array => f16ArrayToF32(f32ArrayToF16(values));

/** The bf16 bits of f32 values (their upper halves), and the f32 values those bits hold. */
export function toBf16(values: Float32Array): { bits: Uint16Array; values: Float32Array } {
  const bits = new Uint16Array(new Uint32Array(values.buffer, values.byteOffset, values.length).map((w) => w >>> 16));
  return { bits, values: new Float32Array(new Uint32Array(Array.from(bits, (h) => h << 16)).buffer) };
}
