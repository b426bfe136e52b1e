// matmul-gemv — matmul for a few rows against a (n, k) B, e.g. the time and pooled-text
// embedding Linears (1 × 2816 → 1280). Tiles would idle all but one of their rows and walk k one
// step after another; here 32 invocations share each output column, each striding k by 128, so
// every B row streams through coalesced loads and the latency chain is k / 128 steps long.
//
// Bindings and Params: those of kernels/matmul.wgsl (the same windows, src/ops/matmul.ts), with
//         bStrideK == 1.
// Workgroup: LANES (32) × COLS (8) invocations own 8 columns × ROWS rows of C; the grid is
// (ceil(n / 8), ceil(m / ROWS), batches). Each invocation accumulates its ROWS dot products over
// k ≡ 4·lane (mod 128); the 32 partial sums per output are then added in workgroup memory.
// Specialized on T (f16 | f32 storage), ROWS, VEC (vec4 loads: k % 4 == 0; else scalar loads),
// and Q8: B is a Linear's Q8 weight at binding 6, as in kernels/matmul.wgsl.

//!include matmul-bindings
//!include q8

// COLS (8) is a constant of src/ops/matmul-gemv.ts, which sizes the grid by it.
const LANES: u32 = 32u;

var<workgroup> partial: array<f32, ROWS * COLS * LANES>;

// Elements i .. i + count - 1 of a (count ≤ 4; the rest zero).
fn loadA(i: u32, count: u32) -> vec4<f32> {
  if (VEC) { return vec4<f32>(a[i >> 2u]); }
  var v = vec4<f32>(0.0);
  for (var e = 0u; e < count; e++) { v[e] = f32(a[(i + e) >> 2u][(i + e) & 3u]); }
  return v;
}

fn loadB(i: u32, count: u32) -> vec4<f32> {
  if (VEC) { return vec4<f32>(b[i >> 2u]); }
  var v = vec4<f32>(0.0);
  for (var e = 0u; e < count; e++) { v[e] = f32(b[(i + e) >> 2u][(i + e) & 3u]); }
  return v;
}

@compute @workgroup_size(LANES, COLS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let col = wg.x * COLS + lid.y;
  let row0 = wg.y * ROWS;
  let aAt = params.aBase + wg.z * params.aBatch + row0 * params.k;
  let bAt = params.bBase + wg.z * params.bBatch + col * params.bStrideN;

  var acc: array<f32, ROWS>;
  if (col < params.n) {
    for (var kk = lid.x * 4u; kk < params.k; kk += LANES * 4u) {
      let count = min(4u, params.k - kk);
      var w: vec4<f32>;
      if (Q8) { w = q8Load4(col, kk, count, params.k, params.q8Scales); } else { w = loadB(bAt + kk, count); }
      for (var r = 0u; r < ROWS; r++) {
        if (row0 + r < params.m) { acc[r] += dot(loadA(aAt + r * params.k + kk, count), w); }
      }
    }
  }

  for (var r = 0u; r < ROWS; r++) { partial[(r * COLS + lid.y) * LANES + lid.x] = acc[r]; }
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) {
      for (var r = 0u; r < ROWS; r++) {
        let i = (r * COLS + lid.y) * LANES + lid.x;
        partial[i] += partial[i + s];
      }
    }
    workgroupBarrier();
  }

  // Lane r writes row r of this column.
  let row = row0 + lid.x;
  if (lid.x < ROWS && row < params.m && col < params.n) {
    var v = partial[(lid.x * COLS + lid.y) * LANES];
    if (params.hasBias != 0u) { v += f32(bias[col]); }
    if (params.hasResidual != 0u) { v += f32(residual[params.residualBase + wg.z * params.cBatch + row * params.n + col]); }
    c[params.cBase + wg.z * params.cBatch + row * params.n + col] = T(v);
  }
}
