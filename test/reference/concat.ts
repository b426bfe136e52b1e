// Reference of kernels/concat.wgsl (a copy: compared exactly).

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** The parts joined along `axis` (non-negative); all other dims agree. */
export function concatRef(parts: ReadonlyArray<{ readonly v: ArrayLike<number>; readonly shape: readonly number[] }>, axis: number): Float32Array {
  const outer = numel(parts[0]!.shape.slice(0, axis));
  const inner = numel(parts[0]!.shape.slice(axis + 1));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const { v, shape } of parts) {
      const block = shape[axis]! * inner;
      for (let k = 0; k < block; k++) out.push(v[o * block + k]!);
    }
  }
  return Float32Array.from(out);
}
