// quantize — a weight (N, K) (a Linear's (out, in), a conv's (O, C·kh·kw)) to the Q8 format
// (docs/Q8.md): int8 values, symmetric, one f16 scale per row and block of BLOCK (32) along K:
//   s[n, b] = f16(max |w[n, k]| / 127) over k in the block;  q = clamp(round(w / s), −127, 127)
//   (0 where s = 0), round half to even (WGSL round). w ≈ q · s.
//
// Bindings: 0 params (uniform), 1 w: array<T> (read), 2 q8: array<u32> (read_write).
// Params: rows (N), k (K), scaleBase (word of q8 where the scales start: ceil(N·K / 4)),
//         words (words of work: scale words for PASS 0, value words for PASS 1).
// Layout of q8: value words, element e = n·K + k in byte e % 4 of word e / 4 (two's complement),
//         then from scaleBase the scales, s[n, b] at index n·ceil(K / 32) + b, two per word
//         (pack2x16float, the even index in the low half).
// Specialized on T (f16 | f32) and PASS: 0 writes the scale words (one per invocation: two
//         blocks), 1 the value words (one per invocation: four elements, which may span two
//         rows when K % 4 ≠ 0). The launcher dispatches 0 then 1.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).
// Core WGSL only for q8 (pack2x16float / unpack2x16float): the f32-only path works without shader-f16.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read_write> q8: array<u32>;

//!include grid

const BLOCK: u32 = 32u;

fn blocksPerRow() -> u32 {
  return (params.k + BLOCK - 1u) / BLOCK;
}

/** The f16 scale of block `s` (row-major over (N, blocks)), as stored: rounded to f16. */
fn blockScale(s: u32) -> f32 {
  let blocks = blocksPerRow();
  if (s >= params.rows * blocks) { return 0.0; }
  let row = s / blocks;
  let k0 = (s - row * blocks) * BLOCK;
  let k1 = min(k0 + BLOCK, params.k);
  var peak = 0.0;
  for (var k = k0; k < k1; k++) { peak = max(peak, abs(f32(w[row * params.k + k]))); }
  return peak / 127.0;
}

/** Element e quantized with its block's stored scale, as the low byte of a u32. */
fn quantized(e: u32) -> u32 {
  let row = e / params.k;
  let k = e - row * params.k;
  let s = row * blocksPerRow() + k / BLOCK;
  let scale = unpack2x16float(q8[params.scaleBase + s / 2u])[s & 1u];
  if (scale == 0.0) { return 0u; }
  let q = clamp(round(f32(w[e]) / scale), -127.0, 127.0);
  return u32(i32(q)) & 0xffu;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.words) { return; }
  if (PASS == 0u) {
    q8[params.scaleBase + i] = pack2x16float(vec2<f32>(blockScale(2u * i), blockScale(2u * i + 1u)));
  } else {
    let n = params.rows * params.k;
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
      let e = 4u * i + j;
      if (e < n) { word |= quantized(e) << (8u * j); }
    }
    q8[i] = word;
  }
}
