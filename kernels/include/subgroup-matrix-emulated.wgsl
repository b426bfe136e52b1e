// subgroup-matrix-emulated — kernels/include/subgroup-matrix.wgsl's operations as plain loops,
// for adapters without `chromium-experimental-subgroup-matrix` (lavapipe): every invocation
// holds and computes the whole matrices, so the kernel's tiling, staging, bounds and epilogue
// run and are tested anywhere; only the builtins themselves are left to the self-check on a
// GPU. Every invocation stores the same values into tileC, so the overlapping stores agree.

alias Left = array<f32, SM_M * SM_K>;
alias Right = array<f32, SM_K * SM_N>;
alias Result = array<f32, SM_M * SM_N>;

fn loadLeft(at: u32) -> Left {
  var l: Left;
  for (var r = 0u; r < SM_M; r++) {
    for (var k = 0u; k < SM_K; k++) { l[r * SM_K + k] = f32(tileA[at + r * TILE_K + k]); }
  }
  return l;
}

fn loadRight(at: u32) -> Right {
  var m: Right;
  for (var k = 0u; k < SM_K; k++) {
    for (var c = 0u; c < SM_N; c++) { m[k * SM_N + c] = f32(tileB[at + k * TILE_N + c]); }
  }
  return m;
}

fn multiplyAdd(l: Left, r: Right, acc: Result) -> Result {
  var out = acc;
  for (var i = 0u; i < SM_M; i++) {
    for (var j = 0u; j < SM_N; j++) {
      var s = out[i * SM_N + j];
      for (var k = 0u; k < SM_K; k++) { s += l[i * SM_K + k] * r[k * SM_N + j]; }
      out[i * SM_N + j] = s;
    }
  }
  return out;
}

fn storeResult(at: u32, acc: Result) {
  for (var r = 0u; r < SM_M; r++) {
    for (var c = 0u; c < SM_N; c++) { tileC[at + r * TILE_N + c] = acc[r * SM_N + c]; }
  }
}
