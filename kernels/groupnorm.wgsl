// groupnorm — y = (x − mean) · rsqrt(var + eps) · gamma[c] + beta[c], then SiLU if SILU, where
// x (B, C, ...spatial) is viewed as rows r = b·G + g of L = cpg · S contiguous elements
// (cpg = C / G channels of S spatial elements); mean and var (biased) are per row.
// Rows are cut into chunks of `chunk` elements; work item w = row · nChunks + j is chunk j of
// its row, and consecutive work items cover consecutive elements, so a dispatch over a range
// of work items binds one contiguous window of x and out (the op splits at the binding limit).
//
// Bindings: 0 params (uniform), 1 x: array<W> window (read), 2 gamma: array<T> (C) (read),
//           3 beta: array<T> (C) (read), 4 stats: array<f32> (2 per work item) (read_write),
//           5 out: array<W> window (read_write).
// Words: x and out are read and written WIDTH elements at a time, WIDTH dividing S so that no
//         word straddles a channel, a row or a chunk (whole channels or 2048 elements). The
//         launcher prepends the word access (load, sum and normalise one word, as functions of
//         F, the f32 math type, defined below): kernels/include/groupnorm-words.wgsl for 1 or 2
//         elements of either dtype, groupnorm-words-f16x8.wgsl for 8 f16 in a vec4<u32>.
// Workgroup: WG invocations (a define: a variant), one workgroup per work item, strided over
//         the chunk (consecutive invocations read consecutive words); grid folded past 65535.
//         Sums by include reduce (subgroup operations where SUBGROUPS).
// Specialized on T (f16 | f32 storage, f32 arithmetic), the words, WG, SUBGROUPS, SILU and the pass:
//   STATS:   the chunk's mean and M2 = Σ(x − mean)² in one read, from sums shifted by the chunk's
//            first element K (Σd and Σd² with d = x − K; mean = K + Σd / n, M2 = Σd² − (Σd)² / n):
//            K lies within a few std of the mean, so this stays sound for |mean| ≫ std. Writes
//            stats[2w] = mean, stats[2w + 1] = M2.
//   !STATS:  combines all partials of its row by two sums (mean = Σ nⱼ·meanⱼ / L, then
//            M2 = Σ M2ⱼ + nⱼ·(meanⱼ − mean)²; every chunk of a row sums in the same order, so all
//            agree), then normalises its chunk.
//   ONEPASS: chunk = L (one work item per row, stats unused): the STATS sums over the row, then
//            the normalisation, whose second read of the row comes from the cache. One dispatch
//            and no partials, but only B·G workgroups: for CPUs and small rows.
// The normalisation is one loop over the chunk: a load, an FMA, the SiLU and a store per word,
// and gamma and beta read by each lane once per channel it enters.
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<W>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<W>;

//!include reduce
//!include grid

/** (Σd, Σd²) of d = v − k over the elements of v. */
fn deviationSums(v: F, k: f32) -> vec2<f32> {
  let d = v - k;
  return vec2<f32>(hsum(d), hsum(d * d));
}

/** The affine of the normalised v, then the SiLU if SILU. */
fn normalized(v: F, mean: f32, a: f32, b: f32) -> F {
  var y = (v - mean) * a + b;
  if (SILU) { y = y / (1.0 + exp(-y)); }
  return y;
}

// Mean and M2 of elements [start, end) of the row at binding index xAt (see main); all three
// are multiples of WIDTH.
fn chunkStats(xAt: u32, start: u32, end: u32, tid: u32) -> vec2<f32> {
  let n = f32(end - start);
  let k = firstElement((xAt + start) / WIDTH);
  var sums = vec2<f32>(0.0);
  for (var i = start + tid * WIDTH; i < end; i += WG * WIDTH) {
    sums += wordSums((xAt + i) / WIDTH, k);
  }
  let t = sumAll(sums, tid);
  return vec2<f32>(k + t.x / n, max(t.y - t.x * t.x / n, 0.0));
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
    let s = chunkStats(xAt, start, end, tid);
    if (tid == 0u) {
      stats[2u * w] = s.x;
      stats[2u * w + 1u] = s.y;
    }
    return;
  }

  var mean: f32;
  var m2: f32;
  if (ONEPASS) {
    let s = chunkStats(xAt, start, end, tid);
    mean = s.x;
    m2 = s.y;
  } else {
    let first = 2u * row * params.nChunks;
    var m = 0.0;
    for (var jj = tid; jj < params.nChunks; jj += WG) {
      m += f32(min(params.chunk, params.L - jj * params.chunk)) * stats[first + 2u * jj];
    }
    mean = sumAll(vec2<f32>(m, 0.0), tid).x / f32(params.L);
    var q = 0.0;
    for (var jj = tid; jj < params.nChunks; jj += WG) {
      let d = stats[first + 2u * jj] - mean;
      q += stats[first + 2u * jj + 1u] + f32(min(params.chunk, params.L - jj * params.chunk)) * d * d;
    }
    m2 = sumAll(vec2<f32>(q, 0.0), tid).x;
  }
  let rstd = inverseSqrt(m2 / f32(params.L) + params.eps);
  let c0 = (row % params.G) * params.cpg;
  let outAt = params.outBase + rowStart - params.xStart;
  // One flat loop; a lane loads the affine of its channel when it enters one. Walking channel by
  // channel instead costs a loop per channel: at 16×16 (4 words per lane and channel on a CPU)
  // that ran up to 1.8× slower (BENCHMARKS.md, "Group norm's loop").
  var hi = 0u;
  var a = 0.0;
  var b = 0.0;
  for (var i = start + tid * WIDTH; i < end; i += WG * WIDTH) {
    if (i >= hi) {
      let c = i / params.S;
      hi = (c + 1u) * params.S;
      a = rstd * f32(gamma[c0 + c]);
      b = f32(beta[c0 + c]);
    }
    normalizeWord((xAt + i) / WIDTH, (outAt + i) / WIDTH, mean, a, b);
  }
}
