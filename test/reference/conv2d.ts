// float64 reference of kernels/conv2d.wgsl.

import { evaluate } from './util.js';

/** [top, bottom, left, right] zero padding. */
export type Pad = readonly [number, number, number, number];

export interface Conv2dRefCase {
  /** Input (B, C, H, W). */
  readonly x: readonly [number, number, number, number];
  /** Output channels and kernel size. */
  readonly o: number;
  readonly kh: number;
  readonly kw: number;
  readonly stride: number;
  readonly pad: Pad;
}

export function conv2dOutShape(c: Conv2dRefCase): [number, number, number, number] {
  const [B, , H, W] = c.x;
  const [top, bottom, left, right] = c.pad;
  return [B, c.o, Math.floor((H + top + bottom - c.kh) / c.stride) + 1, Math.floor((W + left + right - c.kw) / c.stride) + 1];
}

/** out[b,o,y,x] = bias[o] (or, a bias per image of B·O values, bias[b·O + o]) + Σ_c,ky,kx w[o,c,ky,kx]·x[b,c,y·s−top+ky,x·s−left+kx] (+ residual), at the
 *  flat output indices `at` (default all). */
export function conv2dRef(
  x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | null, residual: ArrayLike<number> | null,
  c: Conv2dRefCase, at?: ArrayLike<number>,
): Float64Array {
  const [, C, H, W] = c.x;
  const [B, O, outH, outW] = conv2dOutShape(c);
  const { kh, kw, stride } = c;
  const [top, , left] = c.pad;
  return evaluate(B * O * outH * outW, at, (i) => {
    const ox = i % outW;
    const oy = Math.floor(i / outW) % outH;
    const o = Math.floor(i / (outW * outH)) % O;
    const b = Math.floor(i / (outW * outH * O));
    let acc = bias ? bias[bias.length === O ? o : b * O + o]! : 0;
    for (let ch = 0; ch < C; ch++) {
      for (let ky = 0; ky < kh; ky++) {
        const iy = oy * stride - top + ky;
        if (iy < 0 || iy >= H) continue;
        for (let kx = 0; kx < kw; kx++) {
          const ix = ox * stride - left + kx;
          if (ix < 0 || ix >= W) continue;
          acc += w[((o * C + ch) * kh + ky) * kw + kx]! * x[((b * C + ch) * H + iy) * W + ix]!;
        }
      }
    }
    return acc + (residual ? residual[i]! : 0);
  });
}
