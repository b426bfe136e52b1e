// matmul-bindings — the bindings the matmul kernels (matmul, matmul-gemv, matmul-subgroup-matrix)
// take, so one launcher (src/ops/matmul.ts) windows and binds any: A and B as rows along k (AB:
// vec4<T>, or for kernels/matmul.wgsl's f16 DIRECT tiles the same bytes as vec2<u32>), the
// optional bias and residual (stand-ins the kernel never reads when absent), C.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<AB>;
@group(0) @binding(2) var<storage, read> b: array<AB>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> residual: array<T>;
@group(0) @binding(5) var<storage, read_write> c: array<T>;
