// float64 reference of kernels/layernorm.wgsl, and the row normalisation groupnorm shares.

import { evaluate } from './util.js';

/**
 * Rows of n elements normalised by their mean and biased variance, then `affine(row, i, v)`,
 * at the flat indices `at` (default all); each row's statistics are computed once.
 */
export function normalizeRows(
  x: ArrayLike<number>, rows: number, n: number, eps: number,
  affine: (row: number, i: number, v: number) => number, at?: ArrayLike<number>,
): Float64Array {
  const stats = new Map<number, { mean: number; rstd: number }>();
  const rowStats = (r: number): { mean: number; rstd: number } => {
    let s = stats.get(r);
    if (s) return s;
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[r * n + i]!;
    mean /= n;
    let variance = 0;
    for (let i = 0; i < n; i++) variance += (x[r * n + i]! - mean) ** 2;
    variance /= n;
    s = { mean, rstd: 1 / Math.sqrt(variance + eps) };
    stats.set(r, s);
    return s;
  };
  return evaluate(rows * n, at, (j) => {
    const r = Math.floor(j / n);
    const { mean, rstd } = rowStats(r);
    return affine(r, j % n, (x[j]! - mean) * rstd);
  });
}

/** LayerNorm over the last dim C of x. */
export function layerNormRef(x: ArrayLike<number>, C: number, eps: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, at?: ArrayLike<number>): Float64Array {
  return normalizeRows(x, x.length / C, C, eps, (_, i, v) => v * gamma[i]! + beta[i]!, at);
}
