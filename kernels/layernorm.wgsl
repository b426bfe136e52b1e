// layernorm — y = (x − mean) · rsqrt(var + eps) · gamma[i] + beta[i] over each row of x (rows, C)
// (the last dim); mean and var (biased) per row, in f32 by a corrected two-pass
// (mean₀ = Σx / C; then Σd and Σd² with d = x − mean₀; mean = mean₀ + Σd / C,
// var = (Σd² − (Σd)² / C) / C), sound for |mean| ≫ std. The row is re-read from memory per pass
// (a row is at most a few KiB, so the later passes hit the cache).
//
// Bindings: 0 params (uniform), 1 x: array<T> window (read), 2 gamma: array<T> (C) (read),
//           3 beta: array<T> (C) (read), 4 out: array<T> window (read_write).
// Params: C; rows = rows in this dispatch; xBase / outBase = the index of the dispatch's first
//         row in the x / out bindings (the op splits at the binding limit); eps.
// Workgroup: WG threads per row (a define: a variant), strided over the row (coalesced); grid
//         folded past 65535 (include grid). Sums by include reduce (subgroup operations where
//         SUBGROUPS).
// Specialized on T (f16 | f32 storage, f32 arithmetic), WG, SUBGROUPS.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> out: array<T>;

//!include reduce
//!include grid

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let row = workgroupIndex(wg, nwg);
  if (row >= params.rows) { return; } // the folded grid's tail
  let C = params.C;
  let n = f32(C);
  let xAt = params.xBase + row * C;
  var s = 0.0;
  for (var i = tid; i < C; i += WG) { s += f32(x[xAt + i]); }
  let mean0 = sumAll(vec2<f32>(s, 0.0), tid).x / n;
  var dq = vec2<f32>(0.0);
  for (var i = tid; i < C; i += WG) {
    let d = f32(x[xAt + i]) - mean0;
    dq += vec2<f32>(d, d * d);
  }
  let t = sumAll(dq, tid);
  let mean = mean0 + t.x / n;
  let rstd = inverseSqrt(max(t.y - t.x * t.x / n, 0.0) / n + params.eps);
  let outAt = params.outBase + row * C;
  for (var i = tid; i < C; i += WG) {
    out[outAt + i] = T((f32(x[xAt + i]) - mean) * rstd * f32(gamma[i]) + f32(beta[i]));
  }
}
