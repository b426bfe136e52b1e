// embedding — gathers table rows: out[l, :] = table[ids[l], :]. A table larger than one
// storage binding is bound one window of rows at a time, one dispatch per window; each
// dispatch writes the rows whose id falls in its window.
//
// Bindings: 0 params (uniform), 1 ids: array<f32> (read), 2 table: array<S> (read, the rows
//           rowStart .. rowStart + rowCount − 1), 3 out: array<S> (read_write).
// Params: n = units of S in out; cols = C in units of S; rowStart, rowCount = the window;
//         vocab = V. An id outside 0..V−1 yields a zero row (written by the window at row 0).
// Layout: table (V, C) and out (L, C) row-major. Ids are integers stored as f32 (exact below
//         2^24; Tensor has float dtypes only).
// Specialized on T (f16 | f32), S (T, or vec4<T> when C is a multiple of 4). Rows are copied,
//         never converted.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<S>;
@group(0) @binding(3) var<storage, read_write> out: array<S>;

//!include grid

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  let id = i32(ids[i / params.cols]);
  let row = id - i32(params.rowStart);
  if (row >= 0 && row < i32(params.rowCount)) {
    out[i] = table[u32(row) * params.cols + i % params.cols];
  } else if (params.rowStart == 0u && (id < 0 || id >= i32(params.vocab))) {
    out[i] = S();
  }
}
