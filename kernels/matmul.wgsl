// matmul — C = A·B (+ bias) (+ residual), batched, f32 accumulation. Serves Linear
// (B = the PyTorch (n, k) weight, read transposed) and plain batched matmul.
//
// Bindings: 0 params (uniform), 1 a: array<vec4<T>> (read), 2 b: array<vec4<T>> (read),
//           3 bias: array<T> (read), 4 residual: array<T> (read), 5 c: array<T> (read_write).
//           6 q8: array<u32> (read; include q8), the Q8 weight of a Q8 specialization.
//           Without bias / residual / Q8 the launcher binds a stand-in (hasBias / hasResidual = 0, Q8 false keep it unread).
// Params: m, n, k: the product of one batch, (m, k)·(k, n);
//         aBase, bBase, cBase, residualBase: where the window starts inside each binding (elements);
//         aBatch, bBatch, cBatch: batch strides in elements (bBatch 0: one B for all);
//         bStrideN, bStrideK: strides of B along n and k (Linear weight: k, 1; plain (k, n): 1, n);
//         hasBias, hasResidual: 0 or 1; q8Scales: the word where a Q8 weight's scales start.
// Layout: row-major. A[z, r, i] at aBase + z·aBatch + r·k + i; B[z, i, j] at
//         bBase + z·bBatch + j·bStrideN + i·bStrideK; C [z, r, j] at cBase + z·cBatch + r·n + j,
//         residual likewise from residualBase; bias[j]. A and B are declared vec4 so aligned rows load 16/8 bytes at once;
//         scalar loads index a component (robust for any shape).
// Two ways to walk K (DIRECT picks):
// - staged: the workgroup is (TILE_N / COLS, TILE_M / ROWS) invocations owning a TILE_M × TILE_N
//   block of C; the grid is (ceil(n / TILE_N), ceil(m / TILE_M), batches). Each invocation
//   accumulates ROWS × COLS outputs at rows ly + i·(TILE_M / ROWS) and columns lx + j·(TILE_N /
//   COLS): strided, so neighbouring invocations store neighbouring addresses. More outputs per
//   invocation amortise its workgroup-memory reads (ROWS + COLS vec4s per ROWS·COLS·4 FMAs).
//   K is walked TILE_K at a time: A and B tiles are staged in workgroup memory as vec4<WT> along
//   k (rows padded by one vec4 so column reads hit distinct banks); the next tile's global loads
//   are issued before the current tile's arithmetic (register double buffering).
// - DIRECT (TILE_N == COLS; TILE_K unused): one row of TILE_M / ROWS invocations, each owning
//   ROWS rows (lx + i·(TILE_M / ROWS)) × all COLS columns, read straight from memory a vec4
//   along k per step: no workgroup memory, no barriers. B's addresses are the same for every
//   invocation; with SUBGROUPS each of 4 lanes loads one column of a quad and shares it
//   (include matmul-lane-subgroups), since llvmpipe (8 invocations to a CPU vector) loads even
//   a uniform address once per lane inside a loop. A's rows are per invocation. Rows past m
//   are computed on the last row and never stored; NORM_A: each invocation computes its own
//   rows' stats first (a two-pass walk over each row).
// Specialized on T (f16 | f32 storage), AB (how A and B are bound), TILE_M, TILE_N, TILE_K,
// ROWS, COLS (4 | 8, direct also 16; launcher checks the divisibilities), DIRECT, SUBGROUPS
// (direct only), WT (the staging type: f32, or f16 where the staged values are f16 already:
// f16 A and B without NORM_A or Q8, so nothing rounds), and VEC_A / VEC_B: vec4
// loads along k, valid when k % 4 == 0 (and bStrideK == 1 for B); otherwise scalar loads. Q8: B
// is a Linear's Q8 weight (N, K) at binding 6 (include q8, scales from word q8Scales),
// dequantized in loadB; binding 2 is then a stand-in. Arithmetic and accumulation are f32.
// Fusions (Linear only: batch 1, B = an (n, k) weight):
// - NORM_A: each row of A is layer-normalised as it loads, (a − mean)·rsqrt(var + normEps)
//   (biased var, f32, the corrected two-pass of kernels/layernorm.wgsl), the norm's affine
//   being folded into B and the bias by the caller. Staged, the workgroup first reduces its
//   TILE_M rows (THREADS / TILE_M invocations per row) into rowStats.
// - GEGLU: C (m, n) = h·gelu(g) with [h | g] = A·Bᵀ + bias of width 2n (diffusers' GEGLU: B
//   rows [0, n) are the hidden half, [n, 2n) the gate half). A workgroup owns TILE_N / 2
//   output columns: tile columns [0, TILE_N / 2) are hidden columns, the rest their gates, so
//   an invocation's columns j and j + COLS / 2 pair up (DIRECT: TILE_N == COLS, the same
//   split); the residual is added after the product.
// - A_IMAGE: A is an image (images, k, hw): row r = (image r / hw, pixel r % hw) has its k
//   values hw apart (a Transformer2DModel's proj_in reads the normalised image as tokens).
//   C_IMAGE: C (and the residual) are written the same way, (images, n, hw) (proj_out writes
//   the image back, plus the block's input). Both need the whole tensors in one window.

//!include matmul-bindings
//!include matmul-lane
//!include q8

// The workgroup's grid: staged (columns, rows) of invocations; DIRECT one row of them.
const WX: u32 = select(TILE_N / COLS, TILE_M / ROWS, DIRECT);
const WY: u32 = select(TILE_M / ROWS, 1u, DIRECT);
const THREADS: u32 = WX * WY;
// An invocation's rows and columns are this far apart (staged: strided over the grid).
const ROW_STEP: u32 = select(WY, WX, DIRECT);
const COL_STEP: u32 = select(WX, 1u, DIRECT);
const CQ: u32 = COLS / 4u; // column quads per invocation
const KQ: u32 = TILE_K / 4u; // vec4s per tile row
const STRIDE: u32 = KQ + 1u; // padded row stride of the workgroup tiles
const LOADS_A: u32 = max(TILE_M * KQ / THREADS, 1u); // DIRECT: unused
const LOADS_B: u32 = max(TILE_N * KQ / THREADS, 1u);

// Sized 1 where unused (DIRECT, no NORM_A), so they take no workgroup memory.
var<workgroup> tileA: array<vec4<WT>, select(TILE_M * STRIDE, 1u, DIRECT)>;
var<workgroup> tileB: array<vec4<WT>, select(TILE_N * STRIDE, 1u, DIRECT)>;
// Staged NORM_A: (mean, rstd) of the tile's rows, and the partial sums that make them.
var<workgroup> rowStats: array<vec2<f32>, select(1u, TILE_M, NORM_A && !DIRECT)>;
var<workgroup> rowParts: array<vec2<f32>, select(1u, THREADS, NORM_A && !DIRECT)>;

//!include gelu
alias F = f32; // the gelu include's math type

// A[row, kk .. kk+3] of the batch starting at `base`, zero outside the matrix; NORM_A:
// normalised by the row's stats (row0: the tile's first row).
fn loadA(base: u32, row: u32, kk: u32, row0: u32) -> vec4<f32> {
  let v = loadRawA(base, row, kk);
  if (!NORM_A || row >= params.m) { return v; }
  return normalized(v, rowStats[row - row0], kk);
}

// A row's values kk .. kk+3 normalised by its (mean, rstd), zero past k.
fn normalized(v: vec4<f32>, st: vec2<f32>, kk: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), (v - st.x) * st.y, vec4<u32>(kk) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.k));
}

// A and B as bound: AB is vec4<T>, or for f16 DIRECT tiles vec2<u32> (the same bytes), which
// llvmpipe loads per invocation as two 32-bit words instead of four 16-bit elements.
fn quadA(q: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<T>>(a[q])); }
fn elemA(i: u32) -> f32 { return f32(bitcast<vec4<T>>(a[i >> 2u])[i & 3u]); }
fn quadB(q: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<T>>(b[q])); }
fn elemB(i: u32) -> f32 { return f32(bitcast<vec4<T>>(b[i >> 2u])[i & 3u]); }

fn loadRawA(base: u32, row: u32, kk: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (row >= params.m) { return v; }
  if (A_IMAGE) {
    let img = row / params.hw;
    let at = base + img * params.k * params.hw + row - img * params.hw;
    for (var e = 0u; e < 4u; e++) {
      let ie = at + (kk + e) * params.hw;
      if (kk + e < params.k) { v[e] = elemA(ie); }
    }
    return v;
  }
  let i = base + row * params.k + kk;
  if (VEC_A) {
    if (kk < params.k) { v = quadA(i >> 2u); }
  } else {
    for (var e = 0u; e < 4u; e++) {
      if (kk + e < params.k) { v[e] = elemA(i + e); }
    }
  }
  return v;
}

// B[kk .. kk+3, col] of the batch starting at `base`, zero outside the matrix.
fn loadB(base: u32, col: u32, kk: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (col >= select(params.n, 2u * params.n, GEGLU)) { return v; }
  if (Q8) { return q8Load4(col, kk, select(0u, min(4u, params.k - kk), kk < params.k), params.k, params.q8Scales); }
  let i = base + col * params.bStrideN + kk * params.bStrideK;
  if (VEC_B) {
    if (kk < params.k) { v = quadB(i >> 2u); }
  } else {
    for (var e = 0u; e < 4u; e++) {
      let ie = i + e * params.bStrideK;
      if (kk + e < params.k) { v[e] = elemB(ie); }
    }
  }
  return v;
}

// NORM_A: (mean, rstd) of rows row0 .. row0 + TILE_M into rowStats; THREADS / TILE_M
// invocations share a row, each summing every (THREADS / TILE_M)-th vec4 of it.
const PER_ROW: u32 = max(THREADS / TILE_M, 1u); // DIRECT: unused

// Σ d and Σ d² of d = A[row, kk] − shift over the vec4s part, part + parts, … of the row.
fn rowSums(base: u32, row: u32, part: u32, parts: u32, shift: f32) -> vec2<f32> {
  var s = vec2<f32>(0.0);
  for (var kk = part * 4u; kk < params.k; kk += parts * 4u) {
    let live = vec4<u32>(kk) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.k);
    let d = select(vec4<f32>(0.0), loadRawA(base, row, kk) - shift, live);
    s += vec2<f32>(d.x + d.y + d.z + d.w, dot(d, d));
  }
  return s;
}

// (mean, rstd) from a row's Σ d and Σ d² around mean0 (the corrected two-pass).
fn stats(mean0: f32, t: vec2<f32>) -> vec2<f32> {
  let n = f32(params.k);
  return vec2<f32>(mean0 + t.x / n, inverseSqrt(max(t.y - t.x * t.x / n, 0.0) / n + params.normEps));
}

fn normStats(base: u32, row0: u32, flat: u32) {
  let r = flat / PER_ROW;
  let part = flat % PER_ROW;
  let row = row0 + r;
  let n = f32(params.k);
  var s = vec2<f32>(0.0);
  if (row < params.m) { s = rowSums(base, row, part, PER_ROW, 0.0); }
  rowParts[flat] = s;
  workgroupBarrier();
  if (part == 0u) {
    var t = 0.0;
    for (var p = 0u; p < PER_ROW; p++) { t += rowParts[flat + p].x; }
    rowStats[r] = vec2<f32>(t / n, 0.0);
  }
  workgroupBarrier();
  let mean0 = rowStats[r].x;
  if (row < params.m) { s = rowSums(base, row, part, PER_ROW, mean0); }
  workgroupBarrier(); // every mean0 read before rowStats is rewritten
  rowParts[flat] = s;
  workgroupBarrier();
  if (part == 0u) {
    var t = vec2<f32>(0.0);
    for (var p = 0u; p < PER_ROW; p++) { t += rowParts[flat + p]; }
    rowStats[r] = stats(mean0, t);
  }
  workgroupBarrier(); // rowStats ready
}

// The column of B that tile column t reads (GEGLU: the gates of the first half's columns).
fn bColumn(col0: u32, t: u32) -> u32 {
  if (!GEGLU || t < TILE_N / 2u) { return col0 + t; }
  return params.n + col0 + t - TILE_N / 2u;
}

// Staged: the workgroup's A and B tiles through workgroup memory, TILE_K of k per step.
// acc[i·CQ + c][e]: row i, column 4c + e of this invocation.
fn tiled(aAt: u32, bAt: u32, row0: u32, col0: u32, lid: vec3<u32>) -> array<vec4<f32>, ROWS * CQ> {
  let flat = lid.x + lid.y * WX;
  let tiles = (params.k + TILE_K - 1u) / TILE_K;
  if (NORM_A) { normStats(aAt, row0, flat); }

  // Tile slot s = flat + l·THREADS holds row s / KQ, k-quad s % KQ.
  var nextA: array<vec4<f32>, LOADS_A>;
  var nextB: array<vec4<f32>, LOADS_B>;
  for (var l = 0u; l < LOADS_A; l++) {
    let s = flat + l * THREADS;
    nextA[l] = loadA(aAt, row0 + s / KQ, (s % KQ) * 4u, row0);
  }
  for (var l = 0u; l < LOADS_B; l++) {
    let s = flat + l * THREADS;
    nextB[l] = loadB(bAt, bColumn(col0, s / KQ), (s % KQ) * 4u);
  }

  var acc: array<vec4<f32>, ROWS * CQ>;
  for (var t = 0u; t < tiles; t++) {
    for (var l = 0u; l < LOADS_A; l++) {
      let s = flat + l * THREADS;
      tileA[(s / KQ) * STRIDE + s % KQ] = vec4<WT>(nextA[l]);
    }
    for (var l = 0u; l < LOADS_B; l++) {
      let s = flat + l * THREADS;
      tileB[(s / KQ) * STRIDE + s % KQ] = vec4<WT>(nextB[l]);
    }
    workgroupBarrier();

    if (t + 1u < tiles) {
      let k0 = (t + 1u) * TILE_K;
      for (var l = 0u; l < LOADS_A; l++) {
        let s = flat + l * THREADS;
        nextA[l] = loadA(aAt, row0 + s / KQ, k0 + (s % KQ) * 4u, row0);
      }
      for (var l = 0u; l < LOADS_B; l++) {
        let s = flat + l * THREADS;
        nextB[l] = loadB(bAt, bColumn(col0, s / KQ), k0 + (s % KQ) * 4u);
      }
    }

    for (var q = 0u; q < KQ; q++) {
      // This invocation's columns × 4 k values, regrouped as vec4s of 4 columns per k.
      var bk: array<mat4x4<f32>, CQ>;
      for (var c = 0u; c < CQ; c++) {
        let j = lid.x + 4u * c * WX;
        bk[c] = transpose(mat4x4<f32>(
          vec4<f32>(tileB[j * STRIDE + q]),
          vec4<f32>(tileB[(j + WX) * STRIDE + q]),
          vec4<f32>(tileB[(j + 2u * WX) * STRIDE + q]),
          vec4<f32>(tileB[(j + 3u * WX) * STRIDE + q]),
        ));
      }
      for (var i = 0u; i < ROWS; i++) {
        let av = vec4<f32>(tileA[(lid.y + i * WY) * STRIDE + q]);
        for (var c = 0u; c < CQ; c++) {
          let bq = bk[c];
          acc[i * CQ + c] += av.x * bq[0];
          acc[i * CQ + c] += av.y * bq[1];
          acc[i * CQ + c] += av.z * bq[2];
          acc[i * CQ + c] += av.w * bq[3];
        }
      }
    }
    workgroupBarrier();
  }
  return acc;
}

// DIRECT: rows row0 + lx + i·WX × the workgroup's COLS columns, a vec4 along k per step; A per
// invocation, B's column quads through include matmul-lane (shared across lanes with subgroups).
fn direct(lane: Lane, aAt: u32, bAt: u32, row0: u32, col0: u32, lx: u32) -> array<vec4<f32>, ROWS * CQ> {
  var rows: array<u32, ROWS>;
  var rowStat: array<vec2<f32>, ROWS>;
  for (var i = 0u; i < ROWS; i++) {
    rows[i] = min(row0 + lx + WX * i, params.m - 1u); // rows past m compute a copy, never stored
    if (NORM_A) {
      let mean0 = rowSums(aAt, rows[i], 0u, 1u, 0.0).x / f32(params.k);
      rowStat[i] = stats(mean0, rowSums(aAt, rows[i], 0u, 1u, mean0));
    }
  }
  var acc: array<vec4<f32>, ROWS * CQ>;
  for (var kk = 0u; kk < params.k; kk += 4u) {
    var av: array<vec4<f32>, ROWS>;
    for (var i = 0u; i < ROWS; i++) {
      av[i] = loadRawA(aAt, rows[i], kk);
      if (NORM_A) { av[i] = normalized(av[i], rowStat[i], kk); }
    }
    // A column quad at a time (fewer values live), each quad its own call rather than a loop:
    // 4 quads × 8 rows is past what llvmpipe's compiler unrolls, and acc indexed at run time
    // lives in memory (direct8x16 measured 3 GFLOP/s so, against 22–27 for 4 × 16). CQ is 1, 2
    // or 4 (COLS 4, 8, 16: MATMUL_TILES).
    accumulate(&acc, &av, columnQuad(lane, bAt, col0, 0u, kk), 0u);
    if (CQ > 1u) { accumulate(&acc, &av, columnQuad(lane, bAt, col0, 1u, kk), 1u); }
    if (CQ > 2u) {
      accumulate(&acc, &av, columnQuad(lane, bAt, col0, 2u, kk), 2u);
      accumulate(&acc, &av, columnQuad(lane, bAt, col0, 3u, kk), 3u);
    }
  }
  return acc;
}

// acc[i·CQ + c] += row i of A × column quad c (include matmul-lane's columnQuad: its 4 columns
// × 4 k values, regrouped as vec4s of 4 columns per k), for every row.
fn accumulate(acc: ptr<function, array<vec4<f32>, ROWS * CQ>>, av: ptr<function, array<vec4<f32>, ROWS>>, bq: mat4x4<f32>, c: u32) {
  for (var i = 0u; i < ROWS; i++) {
    (*acc)[i * CQ + c] += (*av)[i].x * bq[0];
    (*acc)[i * CQ + c] += (*av)[i].y * bq[1];
    (*acc)[i * CQ + c] += (*av)[i].z * bq[2];
    (*acc)[i * CQ + c] += (*av)[i].w * bq[3];
  }
}

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, lane: Lane) {
  let row0 = wg.y * TILE_M;
  let col0 = wg.x * select(TILE_N, TILE_N / 2u, GEGLU);
  let aAt = params.aBase + wg.z * params.aBatch;
  let bAt = params.bBase + wg.z * params.bBatch;
  // acc[i·CQ + c][e]: row i, column 4c + e of this invocation, at tile rows rowLane + i·ROW_STEP
  // and columns colLane + j·COL_STEP.
  var acc: array<vec4<f32>, ROWS * CQ>;
  if (DIRECT) { acc = direct(lane, aAt, bAt, row0, col0, lid.x); } else { acc = tiled(aAt, bAt, row0, col0, lid); }
  let rowLane = select(lid.y, lid.x, DIRECT);
  let colLane = select(lid.x, 0u, DIRECT);

  let cAt = params.cBase + wg.z * params.cBatch;
  let rAt = params.residualBase + wg.z * params.cBatch;
  for (var i = 0u; i < ROWS; i++) {
    let row = row0 + rowLane + i * ROW_STEP;
    if (row >= params.m) { break; }
    for (var j = 0u; j < select(COLS, COLS / 2u, GEGLU); j++) {
      let col = col0 + colLane + j * COL_STEP;
      if (col >= params.n) { break; }
      var v = acc[i * CQ + j / 4u][j % 4u];
      if (params.hasBias != 0u) { v += f32(bias[col]); }
      if (GEGLU) {
        let g = j + COLS / 2u;
        var gate = acc[i * CQ + g / 4u][g % 4u];
        if (params.hasBias != 0u) { gate += f32(bias[params.n + col]); }
        v *= geluErf(gate);
      }
      var o = row * params.n + col;
      if (C_IMAGE) {
        let img = row / params.hw;
        o = (img * params.n + col) * params.hw + row - img * params.hw;
      }
      if (params.hasResidual != 0u) { v += f32(residual[rAt + o]); }
      c[cAt + o] = T(v);
    }
  }
}
