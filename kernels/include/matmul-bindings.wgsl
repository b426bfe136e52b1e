// matmul-bindings — the bindings both matmul kernels (matmul, matmul-gemv) take, so one
// launcher (src/ops/matmul.ts) windows and binds either: A and B as vec4 rows along k, the
// optional bias and residual (stand-ins the kernel never reads when absent), C.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<T>>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> residual: array<T>;
@group(0) @binding(5) var<storage, read_write> c: array<T>;
