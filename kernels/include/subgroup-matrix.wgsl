// subgroup-matrix — the matrix operations of kernels/matmul-subgroup-matrix.wgsl on the
// `chromium_experimental_subgroup_matrix` builtins (the launcher prepends the `enable`): one
// subgroup multiplies an SM_M×SM_K left by an SM_K×SM_N right into an SM_M×SM_N f32 result.
// Not an //!include: src/ops/matmul-subgroup-matrix.ts prepends this file, or its emulation
// (subgroup-matrix-emulated.wgsl) that the tests run on adapters without the feature.
// Types take (component, columns, rows); loads and stores take (pointer, offset in elements,
// column-major?, stride in elements); every call is in workgroup-uniform control flow with
// workgroup-uniform arguments (the workgroup is one subgroup; offsets come from constants).

alias Left = subgroup_matrix_left<C, SM_K, SM_M>;
alias Right = subgroup_matrix_right<C, SM_N, SM_K>;
alias Result = subgroup_matrix_result<f32, SM_N, SM_M>;

// The left at row-major tileA[at ..] (stride TILE_K), the right at row-major tileB[at ..]
// (stride TILE_N).
fn loadLeft(at: u32) -> Left { return subgroupMatrixLoad<Left>(&tileA, at, false, TILE_K); }
fn loadRight(at: u32) -> Right { return subgroupMatrixLoad<Right>(&tileB, at, false, TILE_N); }
fn multiplyAdd(l: Left, r: Right, acc: Result) -> Result { return subgroupMatrixMultiplyAccumulate(l, r, acc); }
// The result into row-major tileC[at ..] (stride TILE_N).
fn storeResult(at: u32, acc: Result) { subgroupMatrixStore(&tileC, at, acc, false, TILE_N); }
