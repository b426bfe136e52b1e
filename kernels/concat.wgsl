// concat — copies one input into its slot of the output; concat(tensors, axis) runs one
// dispatch per input.
//
// Bindings: 0 params (uniform), 1 src: array<S> (read), 2 out: array<S> (read_write).
// Params: n = units of S in src; cols = src's row length, dstCols = out's row length,
//         offset = the slot's first column in out, all in units of S.
// Layout: viewed as 2-D around the axis: src (outer, size·inner) row-major into out
//         (outer, total·inner) at column offset (start of the slot along the axis)·inner.
// Specialized on T (f16 | f32), S (T, or vec4<T> when cols, dstCols and offset are multiples
//         of 4 elements). Values are copied, never converted.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<S>;
@group(0) @binding(2) var<storage, read_write> out: array<S>;

//!include grid

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  out[(i / params.cols) * params.dstCols + params.offset + i % params.cols] = src[i];
}
