// float64 reference of kernels/matmul.wgsl (and of kernels/matmul-gemv.wgsl, the same product).

import { evaluate } from './util.js';

export interface MatmulDims {
  readonly batch: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
}

export interface MatmulRefOptions {
  /** B[z] is (n, k) (a Linear weight) instead of (k, n). */
  readonly transposeB: boolean;
  /** One B per batch; else one B for all. */
  readonly bBatched: boolean;
  readonly bias?: ArrayLike<number> | null;
  readonly residual?: ArrayLike<number> | null;
}

/** C[z] = A[z]·B[z] (+ bias) (+ residual), at the flat output indices `at` (default all). */
export function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, { batch, m, n, k }: MatmulDims, opts: MatmulRefOptions, at?: ArrayLike<number>): Float64Array {
  return evaluate(batch * m * n, at, (o) => {
    const j = o % n;
    const row = Math.floor(o / n); // z·m + r
    const bz = opts.bBatched ? Math.floor(row / m) * k * n : 0;
    let s = opts.bias ? opts.bias[j]! : 0;
    for (let i = 0; i < k; i++) s += a[row * k + i]! * b[bz + (opts.transposeB ? j * k + i : i * n + j)]!;
    return s + (opts.residual ? opts.residual[o]! : 0);
  });
}
