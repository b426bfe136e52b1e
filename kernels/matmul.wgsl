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
// Workgroup: (TILE_N / 4, TILE_M / ROWS) invocations own a TILE_M × TILE_N block of C; the grid
//         is (ceil(n / TILE_N), ceil(m / TILE_M), batches). Each invocation accumulates ROWS × 4
//         outputs at rows ly + i·(TILE_M / ROWS) and columns lx + j·(TILE_N / 4): strided, so
//         neighbouring invocations store neighbouring addresses.
// K is walked TILE_K at a time: A and B tiles are staged in workgroup memory as vec4<f32> along
// k (rows padded by one vec4 so column reads hit distinct banks); the next tile's global loads
// are issued before the current tile's arithmetic (register double buffering).
// Specialized on T (f16 | f32 storage), TILE_M, TILE_N, TILE_K, ROWS (launcher checks the
// divisibilities), and VEC_A / VEC_B: vec4 loads along k, valid when k % 4 == 0 (and bStrideK == 1
// for B); otherwise scalar loads. Q8: B is a Linear's Q8 weight (N, K) at binding 6 (include q8,
// scales from word q8Scales), dequantized in loadB; binding 2 is then a stand-in.

//!include matmul-bindings
//!include q8

const WX: u32 = TILE_N / 4u;
const WY: u32 = TILE_M / ROWS;
const THREADS: u32 = WX * WY;
const KQ: u32 = TILE_K / 4u; // vec4s per tile row
const STRIDE: u32 = KQ + 1u; // padded row stride of the workgroup tiles
const LOADS_A: u32 = TILE_M * KQ / THREADS;
const LOADS_B: u32 = TILE_N * KQ / THREADS;

var<workgroup> tileA: array<vec4<f32>, TILE_M * STRIDE>;
var<workgroup> tileB: array<vec4<f32>, TILE_N * STRIDE>;

// A[row, kk .. kk+3] of the batch starting at `base`, zero outside the matrix.
fn loadA(base: u32, row: u32, kk: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (row >= params.m) { return v; }
  let i = base + row * params.k + kk;
  if (VEC_A) {
    if (kk < params.k) { v = vec4<f32>(a[i >> 2u]); }
  } else {
    for (var e = 0u; e < 4u; e++) {
      if (kk + e < params.k) { v[e] = f32(a[(i + e) >> 2u][(i + e) & 3u]); }
    }
  }
  return v;
}

// B[kk .. kk+3, col] of the batch starting at `base`, zero outside the matrix.
fn loadB(base: u32, col: u32, kk: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (col >= params.n) { return v; }
  if (Q8) { return q8Load4(col, kk, select(0u, min(4u, params.k - kk), kk < params.k), params.k, params.q8Scales); }
  let i = base + col * params.bStrideN + kk * params.bStrideK;
  if (VEC_B) {
    if (kk < params.k) { v = vec4<f32>(b[i >> 2u]); }
  } else {
    for (var e = 0u; e < 4u; e++) {
      let ie = i + e * params.bStrideK;
      if (kk + e < params.k) { v[e] = f32(b[ie >> 2u][ie & 3u]); }
    }
  }
  return v;
}

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let flat = lid.x + lid.y * WX;
  let row0 = wg.y * TILE_M;
  let col0 = wg.x * TILE_N;
  let aAt = params.aBase + wg.z * params.aBatch;
  let bAt = params.bBase + wg.z * params.bBatch;
  let tiles = (params.k + TILE_K - 1u) / TILE_K;

  // Tile slot s = flat + l·THREADS holds row s / KQ, k-quad s % KQ.
  var nextA: array<vec4<f32>, LOADS_A>;
  var nextB: array<vec4<f32>, LOADS_B>;
  for (var l = 0u; l < LOADS_A; l++) {
    let s = flat + l * THREADS;
    nextA[l] = loadA(aAt, row0 + s / KQ, (s % KQ) * 4u);
  }
  for (var l = 0u; l < LOADS_B; l++) {
    let s = flat + l * THREADS;
    nextB[l] = loadB(bAt, col0 + s / KQ, (s % KQ) * 4u);
  }

  var acc: array<vec4<f32>, ROWS>;
  for (var t = 0u; t < tiles; t++) {
    for (var l = 0u; l < LOADS_A; l++) {
      let s = flat + l * THREADS;
      tileA[(s / KQ) * STRIDE + s % KQ] = nextA[l];
    }
    for (var l = 0u; l < LOADS_B; l++) {
      let s = flat + l * THREADS;
      tileB[(s / KQ) * STRIDE + s % KQ] = nextB[l];
    }
    workgroupBarrier();

    if (t + 1u < tiles) {
      let k0 = (t + 1u) * TILE_K;
      for (var l = 0u; l < LOADS_A; l++) {
        let s = flat + l * THREADS;
        nextA[l] = loadA(aAt, row0 + s / KQ, k0 + (s % KQ) * 4u);
      }
      for (var l = 0u; l < LOADS_B; l++) {
        let s = flat + l * THREADS;
        nextB[l] = loadB(bAt, col0 + s / KQ, k0 + (s % KQ) * 4u);
      }
    }

    for (var q = 0u; q < KQ; q++) {
      // This invocation's 4 columns × 4 k values, regrouped as one vec4 of columns per k.
      let b0 = tileB[lid.x * STRIDE + q];
      let b1 = tileB[(lid.x + WX) * STRIDE + q];
      let b2 = tileB[(lid.x + 2u * WX) * STRIDE + q];
      let b3 = tileB[(lid.x + 3u * WX) * STRIDE + q];
      let bk0 = vec4<f32>(b0.x, b1.x, b2.x, b3.x);
      let bk1 = vec4<f32>(b0.y, b1.y, b2.y, b3.y);
      let bk2 = vec4<f32>(b0.z, b1.z, b2.z, b3.z);
      let bk3 = vec4<f32>(b0.w, b1.w, b2.w, b3.w);
      for (var i = 0u; i < ROWS; i++) {
        let av = tileA[(lid.y + i * WY) * STRIDE + q];
        acc[i] += av.x * bk0;
        acc[i] += av.y * bk1;
        acc[i] += av.z * bk2;
        acc[i] += av.w * bk3;
      }
    }
    workgroupBarrier();
  }

  let cAt = params.cBase + wg.z * params.cBatch;
  let rAt = params.residualBase + wg.z * params.cBatch;
  for (var i = 0u; i < ROWS; i++) {
    let row = row0 + lid.y + i * WY;
    if (row >= params.m) { break; }
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + lid.x + j * WX;
      if (col >= params.n) { break; }
      var v = acc[i][j];
      if (params.hasBias != 0u) { v += f32(bias[col]); }
      if (params.hasResidual != 0u) { v += f32(residual[rAt + row * params.n + col]); }
      c[cAt + row * params.n + col] = T(v);
    }
  }
}
