// Reference of kernels/embedding.wgsl (a copy: compared exactly).

/** Rows `ids` of a (V, C) table; ids outside 0..V−1 give zero rows. */
export function embeddingRef(table: Float32Array, v: number, c: number, ids: ArrayLike<number>): Float32Array {
  const out = new Float32Array(ids.length * c);
  for (let l = 0; l < ids.length; l++) {
    const id = ids[l]!;
    if (id >= 0 && id < v) out.set(table.subarray(id * c, (id + 1) * c), l * c);
  }
  return out;
}
