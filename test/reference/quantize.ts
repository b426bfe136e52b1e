// float64 reference of kernels/quantize.wgsl and of the Q8 format (docs/Q8.md) the matmul,
// gemv and conv2d kernels read: per row and block of 32 along K, scale = f16(max|w| / 127),
// q = clamp(round-half-even(w / scale), −127, 127), 0 where the scale is 0; w ≈ q · scale.

import { f16ArrayToF32, f32ToF16Bits } from '../../src/f16.js';

export const Q8_BLOCK = 32;

/** Round half to even, as WGSL's round(). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The f16 bits of every block's scale, (rows, ceil(k / 32)) row-major. */
export function q8ScalesRef(w: ArrayLike<number>, rows: number, k: number): Uint16Array {
  const blocks = Math.ceil(k / Q8_BLOCK);
  const scales = new Uint16Array(rows * blocks);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      let peak = 0;
      for (let i = b * Q8_BLOCK; i < Math.min(k, (b + 1) * Q8_BLOCK); i++) peak = Math.max(peak, Math.abs(w[r * k + i]!));
      scales[r * blocks + b] = f32ToF16Bits(Math.fround(peak / 127));
    }
  }
  return scales;
}

/** The int8 values of `w` under the f16 `scales` (bits) given. */
export function q8ValuesRef(w: ArrayLike<number>, scales: Uint16Array, rows: number, k: number): Int8Array {
  const s = f16ArrayToF32(scales);
  const blocks = Math.ceil(k / Q8_BLOCK);
  const values = new Int8Array(rows * k);
  for (let e = 0; e < rows * k; e++) {
    const scale = s[Math.floor(e / k) * blocks + Math.floor((e % k) / Q8_BLOCK)]!;
    values[e] = scale === 0 ? 0 : Math.max(-127, Math.min(127, roundHalfEven(w[e]! / scale)));
  }
  return values;
}

/** The weight a Q8 weight stands for: q · scale. */
export function dequantizeRef(values: Int8Array, scales: Uint16Array, rows: number, k: number): Float64Array {
  const s = f16ArrayToF32(scales);
  const blocks = Math.ceil(k / Q8_BLOCK);
  const out = new Float64Array(rows * k);
  for (let e = 0; e < rows * k; e++) out[e] = values[e]! * s[Math.floor(e / k) * blocks + Math.floor((e % k) / Q8_BLOCK)]!;
  return out;
}
