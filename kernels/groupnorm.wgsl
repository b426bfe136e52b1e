// groupnorm — y = (x − mean) · rsqrt(var + eps) · gamma[c] + beta[c], then SiLU if SILU, where
// x (B, C, ...spatial) is viewed as rows r = b·G + g of L = cpg · S contiguous elements
// (cpg = C / G channels of S spatial elements); mean and var (biased) are per row.
// Rows are cut into chunks of `chunk` elements; work item w = row · nChunks + j is chunk j of
// its row, and consecutive work items cover consecutive elements, so a dispatch over a range
// of work items binds one contiguous window of x and out (the op splits at the binding limit).
//
// Two kernels, selected by STATS:
//   STATS:  one workgroup per work item computes its chunk's mean and M2 = Σ(x − mean)² in one
//           read, from sums shifted by the chunk's first element K (Σd and Σd² with d = x − K;
//           mean = K + Σd / n, M2 = Σd² − (Σd)² / n): K lies within a few std of the mean,
//           so this stays sound for |mean| ≫ std. Writes stats[2w] = mean, stats[2w + 1] = M2.
//   !STATS: one workgroup per work item combines all partials of its row by two sums (mean =
//           Σ nⱼ·meanⱼ / L, then M2 = Σ M2ⱼ + nⱼ·(meanⱼ − mean)²; every chunk of a row sums in the
//           same order, so all agree), then normalises its chunk with the per-channel scale
//           and shift (no per-element division: the channel comes from a float estimate,
//           corrected by one step).
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<T>;

const WG = 64u;

//!include reduce
//!include grid

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
    let k = f32(x[xAt + start]);
    var dq = vec2<f32>(0.0);
    for (var i = start + tid; i < end; i += WG) {
      let d = f32(x[xAt + i]) - k;
      dq += vec2<f32>(d, d * d);
    }
    let t = sumAll(dq, tid);
    if (tid == 0u) {
      stats[2u * w] = k + t.x / n;
      stats[2u * w + 1u] = max(t.y - t.x * t.x / n, 0.0);
    }
    return;
  }

  let first = 2u * row * params.nChunks;
  var m = 0.0;
  for (var jj = tid; jj < params.nChunks; jj += WG) {
    m += f32(min(params.chunk, params.L - jj * params.chunk)) * stats[first + 2u * jj];
  }
  let mean = sumAll(vec2<f32>(m, 0.0), tid).x / f32(params.L);
  var q = 0.0;
  for (var jj = tid; jj < params.nChunks; jj += WG) {
    let d = stats[first + 2u * jj] - mean;
    q += stats[first + 2u * jj + 1u] + f32(min(params.chunk, params.L - jj * params.chunk)) * d * d;
  }
  let rstd = inverseSqrt(sumAll(vec2<f32>(q, 0.0), tid).x / f32(params.L) + params.eps);
  let c0 = (row % params.G) * params.cpg;
  let outAt = params.outBase + rowStart - params.xStart;
  let invS = 1.0 / f32(params.S);
  for (var i = start + tid; i < end; i += WG) {
    // ⌊i / S⌋: the float estimate errs by under one while cpg < 2^22
    var c = u32(f32(i) * invS);
    if (c * params.S > i) { c -= 1u; } else if ((c + 1u) * params.S <= i) { c += 1u; }
    let a = rstd * f32(gamma[c0 + c]);
    var v = (f32(x[xAt + i]) - mean) * a + f32(beta[c0 + c]);
    if (SILU) { v = v / (1.0 + exp(-v)); }
    out[outAt + i] = T(v);
  }
}
