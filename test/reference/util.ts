// Shared by the float64 references, the op tests and tools/bench-kernels.ts (bundled by
// esbuild, so nothing here imports vitest).

/** ‖a − b‖₂ / ‖b‖₂, with NaN anywhere giving NaN (so poisoned outputs never pass). */
export function relL2(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} ≠ expected ${expected.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = actual[i]! - expected[i]!;
    num += d * d;
    den += expected[i]! * expected[i]!;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/**
 * f(i) for the output indices `at`, or for all `total` when `at` is omitted. References take
 * `at` so a benchmark can check a sample of a real-size output without computing all of it.
 */
export function evaluate(total: number, at: ArrayLike<number> | undefined, f: (i: number) => number): Float64Array {
  if (!at) return Float64Array.from({ length: total }, (_, i) => f(i));
  return Float64Array.from(at, (i) => {
    if (!(Number.isInteger(i) && i >= 0 && i < total)) throw new Error(`output index ${i} outside 0..${total - 1}`);
    return f(i);
  });
}
