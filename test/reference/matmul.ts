// float64 reference of kernels/matmul.wgsl (and of kernels/matmul-gemv.wgsl, the same product).

import { gelu } from './elementwise.js';
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

export interface LinearFusionRefOptions {
  readonly bias?: ArrayLike<number> | null;
  readonly residual?: ArrayLike<number> | null;
  /** Layer-normalise each row of x first (no affine): (x − mean)·(var + eps)^-½, biased var. */
  readonly normEps?: number;
  /** w is (2n, k): out = h·gelu(g) with [h | g] the 2n outputs (exact gelu). */
  readonly geglu?: boolean;
}

/** x (m, k) · w (n', k)ᵀ + bias with linear's fusions (LinearOptions.normEps / geglu) → (m, n). */
export function linearFusedRef(x: ArrayLike<number>, w: ArrayLike<number>, m: number, n: number, k: number, opts: LinearFusionRefOptions): Float64Array {
  const rows = Float64Array.from(x);
  if (opts.normEps !== undefined) {
    for (let r = 0; r < m; r++) {
      const row = rows.subarray(r * k, (r + 1) * k);
      const mean = row.reduce((s, v) => s + v, 0) / k;
      const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / k;
      for (let i = 0; i < k; i++) row[i] = (row[i]! - mean) / Math.sqrt(variance + opts.normEps);
    }
  }
  const wide = opts.geglu ? 2 * n : n;
  const full = matmulRef(rows, w, { batch: 1, m, n: wide, k }, { transposeB: true, bBatched: false, bias: opts.bias });
  return Float64Array.from({ length: m * n }, (_, o) => {
    const [r, j] = [Math.floor(o / n), o % n];
    const v = opts.geglu ? full[r * wide + j]! * gelu(full[r * wide + n + j]!) : full[o]!;
    return v + (opts.residual ? opts.residual[o]! : 0);
  });
}
