// tiles — copies a spatial window between two NCHW tensors with the same channel count,
// optionally weighted by linear ramps at its edges and added to what the destination holds:
//   dst[dB0 + b, c, dY + y, dX + x] (+)= wy(y)·wx(x)·src[sB0 + b, c, sY + y, sX + x]
// for b < images, c < C, y < h, x < w. Cropping a latent tile is a plain copy; blending a
// decoded tile into the image accumulates it with ramps that make the weights of neighbouring
// tiles sum to one across every overlap (diffusers' blend_v / blend_h weights):
//   wy(y) = min(1, y / rampTop, (h − y) / rampBottom), a ramp of width 0 meaning none; wx alike.
//
// Bindings: 0 params (uniform), 1 src: array<T> (read), 2 dst: array<T> (read_write).
// Params: n = images·C·h·w (invocations), C, h, w = the window; srcH, srcW, srcB0, srcY, srcX
//         and dstH, dstW, dstB0, dstY, dstX = each tensor's plane size and the window's first
//         image and top-left pixel in it; rampTop, rampBottom, rampLeft, rampRight in pixels.
// Layout: contiguous NCHW; one invocation per window element, x fastest.
// Specialized on T (f16 | f32) and ACCUMULATE (add into dst instead of overwriting it).
//         Weights and sums are f32; with all ramps 0 a copy is exact.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<T>;

//!include grid

// Weight of position p of a window of n along one axis.
fn ramp(p: u32, n: u32, before: u32, after: u32) -> f32 {
  var v = 1.0;
  if (p < before) { v = f32(p) / f32(before); }
  if (n - p <= after) { v = min(v, f32(n - p) / f32(after)); }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  let x = i % params.w;
  let y = (i / params.w) % params.h;
  let plane = i / (params.w * params.h); // b·C + c within the window
  let c = plane % params.C;
  let b = plane / params.C;
  let s = ((params.srcB0 + b) * params.C + c) * params.srcH * params.srcW + (params.srcY + y) * params.srcW + params.srcX + x;
  let d = ((params.dstB0 + b) * params.C + c) * params.dstH * params.dstW + (params.dstY + y) * params.dstW + params.dstX + x;
  let weight = ramp(y, params.h, params.rampTop, params.rampBottom) * ramp(x, params.w, params.rampLeft, params.rampRight);
  var v = weight * f32(src[s]);
  if (ACCUMULATE) { v += f32(dst[d]); }
  dst[d] = T(v);
}
