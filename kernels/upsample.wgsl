// upsample — nearest-neighbour resizing of NCHW planes as PyTorch's F.interpolate(mode='nearest')
// computes it (aten's nearest_idx): out[p, y, x] = src[p, sy, sx] with
// s = min(floor(i · scale), in − 1) and scale = in / out rounded to f32, the product in f32.
// For out = 2·in the scale is exactly ½, so this is aten's i >> 1 shortcut too.
//
// Bindings: 0 params (uniform), 1 src: array<T> (read), 2 out: array<T> (read_write).
// Params: n = out elements (this window: whole planes); inH, inW, outH, outW = the planes'
//         sizes; scaleY, scaleX = inH / outH, inW / outW rounded to f32 on the host (WGSL's
//         division is not correctly rounded; its multiplication is).
// Layout: planes of inH·inW in, outH·outW out, contiguous. One output element per invocation.
// Specialized on T (f16 | f32). Values are copied, never converted.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

//!include grid

fn sourceIndex(i: u32, scale: f32, size: u32) -> u32 {
  return min(u32(floor(f32(i) * scale)), size - 1u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  let x = i % params.outW;
  let rows = i / params.outW; // output rows before this one, over all planes
  let y = rows % params.outH;
  let plane = rows / params.outH;
  let sy = sourceIndex(y, params.scaleY, params.inH);
  let sx = sourceIndex(x, params.scaleX, params.inW);
  out[i] = src[(plane * params.inH + sy) * params.inW + sx];
}
