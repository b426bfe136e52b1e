// subgroup-matrix — the matrix operations of kernels/matmul-subgroup-matrix.wgsl on the
// `chromium_experimental_subgroup_matrix` builtins (the launcher prepends the `enable`): one
// subgroup multiplies an SM_M×SM_K left by an SM_K×SM_N right into an SM_M×SM_N f32 result.
// Not a shared include: src/ops/matmul-subgroup-matrix.ts prepends this file, or its emulation
// (subgroup-matrix-emulated.wgsl) that the tests run on adapters without the feature.
// Types take (component, columns, rows); loads and stores take the majorness as a template
// argument and (pointer, offset in elements[, value], stride in elements), the newer form, which
// webgpu 0.6.2's Tint has (its dawn.node holds the Majorness parser; not compiled here: lavapipe
// rejects the `enable`). Older Tints take a `col_major: bool` argument instead and reject this
// file: their self-check says so and the tiled kernels stay. Every call is in
// workgroup-uniform control flow with workgroup-uniform arguments (the workgroup is one
// subgroup; offsets come from constants).

alias Left = subgroup_matrix_left<C, SM_K, SM_M>;
alias Right = subgroup_matrix_right<C, SM_N, SM_K>;
alias Result = subgroup_matrix_result<f32, SM_N, SM_M>;

// The left at row-major tileA[at ..] (stride TILE_K), the right at row-major tileB[at ..]
// (stride TILE_N).
fn loadLeft(at: u32) -> Left { return subgroupMatrixLoad<Left, row_major>(&tileA, at, TILE_K); }
fn loadRight(at: u32) -> Right { return subgroupMatrixLoad<Right, row_major>(&tileB, at, TILE_N); }
fn multiplyAdd(l: Left, r: Right, acc: Result) -> Result { return subgroupMatrixMultiplyAccumulate(l, r, acc); }
// The result into row-major tileC[at ..] (stride TILE_N).
fn storeResult(at: u32, acc: Result) { subgroupMatrixStore<row_major>(&tileC, at, acc, TILE_N); }
