// q8 — reads a Q8 weight (docs/Q8.md; kernels/quantize.wgsl writes it) inside the matmul, gemv
// and conv2d kernels, dequantized as it loads (no float copy of the weight exists): binding 6
// holds the value words, then from word `scaleBase` the f16 scales. `rowLen` is K, the
// weight's row length. Kernels not specialized for Q8 bind a stand-in they never read.

@group(0) @binding(6) var<storage, read> q8: array<u32>;

const Q8_BLOCK: u32 = 32u;

/** The scale of W[row, k]'s block. */
fn q8Scale(row: u32, k: u32, rowLen: u32, scaleBase: u32) -> f32 {
  let s = row * ((rowLen + Q8_BLOCK - 1u) / Q8_BLOCK) + k / Q8_BLOCK;
  return unpack2x16float(q8[scaleBase + s / 2u])[s & 1u];
}

/** The int8 value of flat element e (byte e % 4 of word e / 4, sign-extended). */
fn q8Int(e: u32) -> f32 {
  return f32(i32(q8[e >> 2u] << (24u - 8u * (e & 3u))) >> 24u);
}

/** W[row, k .. k + count − 1] dequantized, zero past count (≤ 4); k % 4 == 0, so the four
 *  share one block, and one word holds them when the row starts word-aligned. */
fn q8Load4(row: u32, k: u32, count: u32, rowLen: u32, scaleBase: u32) -> vec4<f32> {
  let e = row * rowLen + k;
  var v = vec4<f32>(0.0);
  if (count == 4u && (e & 3u) == 0u) {
    v = vec4<f32>((vec4<i32>(i32(q8[e >> 2u])) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
  } else {
    for (var j = 0u; j < count; j++) { v[j] = q8Int(e + j); }
  }
  return v * q8Scale(row, k, rowLen, scaleBase);
}

/** Flat element e of a weight of rows of rowLen, dequantized. */
fn q8At(e: u32, rowLen: u32, scaleBase: u32) -> f32 {
  let row = e / rowLen;
  return q8Int(e) * q8Scale(row, e - row * rowLen, rowLen, scaleBase);
}
