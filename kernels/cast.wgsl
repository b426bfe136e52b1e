// cast — converts a tensor between storage formats on the GPU, so weight files upload
// as they are and convert where they land (no CPU pass over gigabytes).
//
// Bindings: 0 params (uniform), 1 src: array<u32> (read), 2 dst: array<u32> (read_write).
// Params: n = element count, words = words of work (see MODE).
// Layout: elements packed little-endian, two 16-bit or one 32-bit element per u32 word;
//         an odd f16 tail leaves the upper half of the last word zero.
// Specialized on MODE: 0 f32→f16 (one dst word from two src words),
//                      1 f16→f32 (two dst words from one src word),
//                      2 bf16→f32 (two dst words from one src word),
//                      3 bf16→f16 (one dst word from one src word).
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).
// Core WGSL only (pack2x16float / unpack2x16float): works without shader-f16.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

//!include grid

fn bf16Pair(w: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.words) { return; }
  if (MODE == 0u) {
    let hi = select(0.0, bitcast<f32>(src[2u * i + 1u]), 2u * i + 1u < params.n);
    dst[i] = pack2x16float(vec2<f32>(bitcast<f32>(src[2u * i]), hi));
  } else if (MODE == 3u) {
    dst[i] = pack2x16float(bf16Pair(src[i])) & select(0xffffu, 0xffffffffu, 2u * i + 1u < params.n);
  } else {
    let v = select(bf16Pair(src[i]), unpack2x16float(src[i]), MODE == 1u);
    dst[2u * i] = bitcast<u32>(v.x);
    if (2u * i + 1u < params.n) { dst[2u * i + 1u] = bitcast<u32>(v.y); }
  }
}
