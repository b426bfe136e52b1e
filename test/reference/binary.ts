// float64 reference of kernels/binary.wgsl.

/** out[i] = f(a[i], b[broadcast index of i]), b's shape right-aligned onto a's (NumPy rules). */
export function binaryRef(a: ArrayLike<number>, aShape: readonly number[], b: ArrayLike<number>, bShape: readonly number[], f: (x: number, y: number) => number): Float64Array {
  const out = new Float64Array(a.length);
  const off = aShape.length - bShape.length;
  for (let i = 0; i < a.length; i++) {
    let rest = i;
    let j = 0;
    let bStride = 1;
    for (let k = aShape.length - 1; k >= 0; k--) {
      const coord = rest % aShape[k]!;
      rest = Math.floor(rest / aShape[k]!);
      const bd = k >= off ? bShape[k - off]! : 1;
      if (bd !== 1) j += coord * bStride;
      bStride *= bd;
    }
    out[i] = f(a[i]!, b[j]!);
  }
  return out;
}
