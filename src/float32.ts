// Float32 arithmetic that Math.fround alone cannot reproduce. fround(a op b) of float32
// operands is already the correctly rounded float32 result for + − × ÷ √ (a double carries
// more than 2·24 + 2 bits, so rounding twice is harmless); a fused multiply-add is not, and
// the reference's compiled CPU kernels (torch's linspace, its vectorised randn) contain them.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** fmaf(a, b, c): a·b + c rounded once to float32, for float32 a, b, c. */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b; // exact: two 24-bit significands fit in 53 bits
  const s = p + c;
  const r = Math.fround(s);
  if (r === s) return r;
  // s was rounded to a double; that only matters to the float32 rounding when s fell exactly
  // halfway between two floats, and then the sign of the lost part (TwoSum) breaks the tie.
  const sp = s - p;
  const lost = p - (s - sp) + (c - sp);
  if (lost === 0) return r;
  const other = neighbourTowards(r, s);
  if (s !== (r + other) / 2) return r;
  return lost > 0 === other > r ? other : r;
}

/** The float32 adjacent to r on the side of x (x ≠ r, both finite). */
function neighbourTowards(r: number, x: number): number {
  f32[0] = r;
  if (r === 0) u32[0] = x > 0 ? 1 : 0x80000001; // smallest subnormal of x's sign
  else if (x > r === r > 0) u32[0] += 1; // away from zero
  else u32[0] -= 1;
  return f32[0]!;
}
