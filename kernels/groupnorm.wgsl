// groupnorm — y = (x − mean) · rsqrt(var + eps) · gamma[c] + beta[c], then SiLU if SILU, where
// x (B, C, ...spatial) is viewed as rows r = b·G + g of L = cpg · S contiguous elements
// (cpg = C / G channels of S spatial elements); mean and var (biased) are per row.
// Rows are cut into chunks of `chunk` elements; work item w = row · nChunks + j is chunk j of
// its row, and consecutive work items cover consecutive elements, so a dispatch over a range
// of work items binds one contiguous window of x and out (the op splits at the binding limit).
//
// Two kernels, selected by STATS:
//   STATS:  one workgroup per work item computes its chunk's mean and M2 = Σ(x − mean)² with a
//           corrected two-pass (mean₀ = Σx / n; then Σd and Σd² with d = x − mean₀;
//           mean = mean₀ + Σd / n, M2 = Σd² − (Σd)² / n), sound for |mean| ≫ std, and writes
//           stats[2w] = mean, stats[2w + 1] = M2.
//   !STATS: one workgroup per work item merges all partials of its row (Chan et al.'s pairwise
//           update; every chunk of a row merges in the same order, so all agree), then
//           normalises its chunk.
// Bindings: 0 params (uniform), 1 x: array<T> window (read), 2 gamma: array<T> (C) (read),
//           3 beta: array<T> (C) (read), 4 stats: array<f32> (B·G·nChunks·2) (read_write),
//           5 out: array<T> window (read_write). Both kernels declare every binding.
// Params: L, S, cpg, G, chunk, nChunks; itemStart and itemCount = the work items of this dispatch;
//         xStart = global index of the window's first element, xBase / outBase = its index in
//         the x / out bindings; eps.
// Workgroup: WG = 256 threads, strided over the chunk (coalesced); grid folded past 65535
//         (include grid).
// Specialized on T (f16 | f32 storage, f32 arithmetic), STATS, SILU.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<T>;

const WG = 256u;

//!include reduce
//!include grid

var<workgroup> parts: array<vec3<f32>, WG>;

/** Merges two (count, mean, M2) partials. */
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  let n = a.x + b.x;
  if (n == 0.0) { return a; }
  let d = b.y - a.y;
  let f = b.x / n;
  return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let local = workgroupIndex(wg, nwg);
  if (local >= params.itemCount) { return; } // the folded grid's tail
  let w = params.itemStart + local;
  let row = w / params.nChunks;
  let j = w - row * params.nChunks;
  let start = j * params.chunk;
  let end = min(start + params.chunk, params.L);
  let rowStart = row * params.L; // global element index
  // Binding index of the row's element 0; may wrap below zero when the window starts mid-row,
  // which u32 arithmetic undoes when the in-window offset i is added.
  let xAt = params.xBase + rowStart - params.xStart;

  if (STATS) {
    let n = f32(end - start);
    var s = 0.0;
    for (var i = start + tid; i < end; i += WG) { s += f32(x[xAt + i]); }
    let mean0 = sumAll(vec2<f32>(s, 0.0), tid).x / n;
    var dq = vec2<f32>(0.0);
    for (var i = start + tid; i < end; i += WG) {
      let d = f32(x[xAt + i]) - mean0;
      dq += vec2<f32>(d, d * d);
    }
    let t = sumAll(dq, tid);
    if (tid == 0u) {
      stats[2u * w] = mean0 + t.x / n;
      stats[2u * w + 1u] = max(t.y - t.x * t.x / n, 0.0);
    }
    return;
  }

  var acc = vec3<f32>(0.0);
  for (var jj = tid; jj < params.nChunks; jj += WG) {
    let p = 2u * (row * params.nChunks + jj);
    acc = merge(acc, vec3<f32>(f32(min(params.chunk, params.L - jj * params.chunk)), stats[p], stats[p + 1u]));
  }
  parts[tid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) { parts[tid] = merge(parts[tid], parts[tid + s]); }
    workgroupBarrier();
  }
  let total = parts[0];
  let mean = total.y;
  let rstd = inverseSqrt(total.z / f32(params.L) + params.eps);
  let c0 = (row % params.G) * params.cpg;
  let outAt = params.outBase + rowStart - params.xStart;
  for (var i = start + tid; i < end; i += WG) {
    let c = c0 + i / params.S;
    var v = (f32(x[xAt + i]) - mean) * rstd * f32(gamma[c]) + f32(beta[c]);
    if (SILU) { v = v / (1.0 + exp(-v)); }
    out[outAt + i] = T(v);
  }
}
