// float64 reference of kernels/matmul-subgroup-matrix.wgsl: the same product as
// kernels/matmul.wgsl (bias, residual, B either way round), so the same reference.

export { matmulRef } from './matmul.js';
