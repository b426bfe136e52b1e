// float64 reference of kernels/groupnorm.wgsl.

import { normalizeRows } from './layernorm.js';

/** GroupNorm of x (B, C, ...spatial) over G groups, then the affine, then SiLU if `silu`. */
export function groupNormRef(
  x: ArrayLike<number>, [B, C, ...spatial]: readonly number[], G: number, eps: number,
  gamma: ArrayLike<number>, beta: ArrayLike<number>, silu: boolean, at?: ArrayLike<number>,
): Float64Array {
  const S = spatial.reduce((a, b) => a * b, 1);
  const cpg = C! / G;
  return normalizeRows(x, B! * G, cpg * S, eps, (row, i, v) => {
    const c = (row % G) * cpg + Math.floor(i / S);
    const y = v * gamma[c]! + beta[c]!;
    return silu ? y / (1 + Math.exp(-y)) : y;
  }, at);
}
