// float64 reference of kernels/matmul-gemv.wgsl: the product of kernels/matmul.wgsl, which the
// gemv kernel computes for a few rows with another split of the work.

export { matmulRef as matmulGemvRef } from './matmul.js';
