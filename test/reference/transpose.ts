// Reference of kernels/transpose.wgsl (a copy: compared exactly).

/** x (B, X, Y) → (B, Y, X). */
export function transposeRef(x: ArrayLike<number>, [b, rows, cols]: readonly [number, number, number]): Float32Array {
  const out = new Float32Array(b * rows * cols);
  for (let i = 0; i < b; i++) for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[(i * cols + c) * rows + r] = x[(i * rows + r) * cols + c]!;
  return out;
}
