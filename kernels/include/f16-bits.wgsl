// f16-bits — f32 → f16 rounding (to nearest even, IEEE: subnormals, overflow to ±inf, NaN) by
// integer arithmetic on the f32 bits, for kernels that store f16 at memory speed. llvmpipe has
// no vector f32 → f16 conversion (no vcvtps2ph in its code): `f16(v)` there is a long integer
// sequence, a third of group norm's time; this is about a dozen operations, exact for every
// input, and needs no `enable f16`. On a GPU the few extra integer operations hide under the
// memory traffic of a bandwidth-bound kernel.

/** The f16 bit patterns of v (in the low 16 bits of each component). */
fn halfBits(v: vec4<f32>) -> vec4<u32> {
  let bits = bitcast<vec4<u32>>(v);
  let a = bits & vec4(0x7fffffffu);
  // Normal results: rebias the exponent by 15 − 127, then round the 13 dropped bits to
  // nearest even (a carry into the exponent is the right result, up to infinity).
  let normal = (a + vec4(0xc8000fffu) + ((a >> vec4(13u)) & vec4(1u))) >> vec4(13u);
  // Below 2⁻¹⁴ (f16 subnormals and zero): adding 0.5 leaves the value in the f32 ulp of 2⁻²⁴
  // = the f16 subnormal step, so the f32 addition's own rounding is the f16 one.
  let subnormal = bitcast<vec4<u32>>(bitcast<vec4<f32>>(a) + vec4(0.5)) - vec4(0x3f000000u);
  var h = select(normal, subnormal, a < vec4(0x38800000u)); // 2⁻¹⁴
  h = select(h, vec4(0x7c00u), a >= vec4(0x47800000u)); // 2¹⁶ and up, infinity: ±inf
  h = select(h, vec4(0x7e00u), a > vec4(0x7f800000u)); // NaN
  return h | ((bits >> vec4(16u)) & vec4(0x8000u));
}

/** v as four f16 in two words, first value in the low half: bitcast<vec2<u32>>(vec4<f16>(v)). */
fn packHalves(v: vec4<f32>) -> vec2<u32> {
  let h = halfBits(v);
  return vec2<u32>(h.x | (h.y << 16u), h.z | (h.w << 16u));
}
