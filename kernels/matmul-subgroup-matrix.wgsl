// matmul-subgroup-matrix — C = A·B (+ bias) (+ residual), batched, on subgroup matrices (tensor
// cores): the variant 'subgroup-matrix' of src/ops/matmul.ts, with matmul.wgsl's bindings,
// params and layouts (see there), dispatched over the same windows.
// NOT RUNNABLE ON LAVAPIPE: it needs Dawn's `chromium-experimental-subgroup-matrix` feature
// (lavapipe has none; Tint there rejects the `enable`), so it is compiled and checked only on a
// GPU, by the start-up self-check against matmul.wgsl (src/ops/subgroup-matrix-check.ts) before
// any matmul may use it. The tests run this file with the matrix operations emulated
// (kernels/include/subgroup-matrix-emulated.wgsl), which checks everything else in it.
//
// The matrix operations (Left, Right, Result, loadLeft, loadRight, multiplyAdd, storeResult)
// come from kernels/include/subgroup-matrix.wgsl, which the launcher prepends.
// Workgroup: one subgroup, SG = the adapter's subgroupMaxSize invocations (Dawn requires a
//   multiple), owns a TILE_M × TILE_N block of C as RM × RN result matrices of SM_M × SM_N;
//   grid (ceil(n / TILE_N), ceil(m / TILE_M), batches). A subgroup narrower than SG (an
//   adapter with several sizes) repeats the same uniform work and stores the same values.
// K is walked TILE_K = STEPS·SM_K at a time: the workgroup stages A (TILE_M × TILE_K) and B
//   (TILE_K × TILE_N) row-major in workgroup memory in the component type C, zero outside the
//   matrices (so any m, n, k works), then multiplies STEPS left/right pairs into the results.
//   Finally the results go through tileC (f32) to the epilogue: bias, residual, cast to T.
// Specialized on T (storage f16 | f32), C (the config's component type, holding T exactly),
//   SM_M, SM_N, SM_K (the config), RM, RN, STEPS, SG, and Q8 (B is a Linear's Q8 weight).
// Accumulates in f32 (the launcher takes only configs with f32 results).

//!include matmul-bindings
//!include q8

const TILE_M: u32 = RM * SM_M;
const TILE_N: u32 = RN * SM_N;
const TILE_K: u32 = STEPS * SM_K;

var<workgroup> tileA: array<C, TILE_M * TILE_K>;
var<workgroup> tileB: array<C, TILE_K * TILE_N>;
var<workgroup> tileC: array<f32, TILE_M * TILE_N>;

// A[row, kk] of the batch starting at `base`, zero outside the matrix.
fn loadA(base: u32, row: u32, kk: u32) -> f32 {
  if (row >= params.m || kk >= params.k) { return 0.0; }
  let i = base + row * params.k + kk;
  return f32(a[i >> 2u][i & 3u]);
}

// B[kk, col] of the batch starting at `base`, zero outside the matrix.
fn loadB(base: u32, col: u32, kk: u32) -> f32 {
  if (col >= params.n || kk >= params.k) { return 0.0; }
  if (Q8) { return q8At(col * params.k + kk, col, params.k, params.q8Scales); }
  let i = base + col * params.bStrideN + kk * params.bStrideK;
  return f32(b[i >> 2u][i & 3u]);
}

@compute @workgroup_size(SG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let row0 = wg.y * TILE_M;
  let col0 = wg.x * TILE_N;
  let aAt = params.aBase + wg.z * params.aBatch;
  let bAt = params.bBase + wg.z * params.bBatch;

  var acc: array<Result, RM * RN>;
  for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
    for (var e = lane; e < TILE_M * TILE_K; e += SG) {
      tileA[e] = C(loadA(aAt, row0 + e / TILE_K, k0 + e % TILE_K));
    }
    for (var e = lane; e < TILE_K * TILE_N; e += SG) {
      tileB[e] = C(loadB(bAt, col0 + e % TILE_N, k0 + e / TILE_N));
    }
    workgroupBarrier();
    for (var s = 0u; s < STEPS; s++) {
      var rights: array<Right, RN>;
      for (var j = 0u; j < RN; j++) { rights[j] = loadRight(s * SM_K * TILE_N + j * SM_N); }
      for (var i = 0u; i < RM; i++) {
        let l = loadLeft(i * SM_M * TILE_K + s * SM_K);
        for (var j = 0u; j < RN; j++) { acc[i * RN + j] = multiplyAdd(l, rights[j], acc[i * RN + j]); }
      }
    }
    workgroupBarrier(); // the tiles are read before the next ones are staged
  }

  for (var i = 0u; i < RM; i++) {
    for (var j = 0u; j < RN; j++) { storeResult(i * SM_M * TILE_N + j * SM_N, acc[i * RN + j]); }
  }
  workgroupBarrier();

  let cAt = params.cBase + wg.z * params.cBatch;
  let rAt = params.residualBase + wg.z * params.cBatch;
  for (var e = lane; e < TILE_M * TILE_N; e += SG) {
    let row = row0 + e / TILE_N;
    let col = col0 + e % TILE_N;
    if (row >= params.m || col >= params.n) { continue; }
    var v = tileC[e];
    if (params.hasBias != 0u) { v += f32(bias[col]); }
    let o = row * params.n + col;
    if (params.hasResidual != 0u) { v += f32(residual[rAt + o]); }
    c[cAt + o] = T(v);
  }
}
