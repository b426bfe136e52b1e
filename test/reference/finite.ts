// Reference of kernels/finite.wgsl: the count of values that are NaN or ±Inf, over the values a
// tensor holds (for f16, after rounding: finite f32 values past 65504 become ±Inf there).

export function countNonFinite(values: ArrayLike<number>): number {
  let count = 0;
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) count++;
  return count;
}
