// The split-k gemv kernel (kernels/matmul-gemv.wgsl): matmul for a few rows against an (n, k) B,
// e.g. the time and pooled-text embedding Linears. src/ops/matmul.ts picks it (pickVariant) and
// dispatches it over the same windows as the tiled kernel, so the two share one uniform layout.

import source from '../../kernels/matmul-gemv.wgsl';
import { type Defines, defineKernel, type KernelSource } from '../gpu/pipeline-cache.js';
import { type UniformKey, uniforms } from '../gpu/uniforms.js';
import type { DType } from '../tensor.js';

/** The params of both matmul kernels (kernels/matmul.wgsl documents them). */
export const matmulLayout = uniforms(
  ['m', 'u32'], ['n', 'u32'], ['k', 'u32'],
  ['aBase', 'u32'], ['bBase', 'u32'], ['cBase', 'u32'], ['residualBase', 'u32'],
  ['aBatch', 'u32'], ['bBatch', 'u32'], ['cBatch', 'u32'], ['bStrideN', 'u32'], ['bStrideK', 'u32'],
  ['hasBias', 'u32'], ['hasResidual', 'u32'], ['q8Scales', 'u32'], ['normEps', 'f32'], ['hw', 'u32'],
);

/** Rows of C per gemv workgroup (at most this many rows take the gemv variant). */
export const GEMV_ROWS = 4;
/** Columns of C per gemv workgroup. */
const COLS = 8;

export const gemvKernel = defineKernel({ name: 'matmul-gemv', source, layout: matmulLayout, constants: { COLS } });

/** A matmul kernel specialization and the block of C each workgroup computes. */
export interface MatmulSpecialization {
  readonly kernel: KernelSource<UniformKey<typeof matmulLayout>>;
  readonly defines: Defines;
  readonly groupRows: number;
  readonly groupCols: number;
}

/** The gemv specialization for `dtype`; `k % 4 == 0` gives vec4 loads; `q8`: B is a Q8Tensor. */
export function gemvSpecialization(dtype: DType, k: number, q8: boolean): MatmulSpecialization {
  return { kernel: gemvKernel, defines: { T: dtype, AB: `vec4<${dtype}>`, ROWS: GEMV_ROWS, VEC: k % 4 === 0, Q8: q8 }, groupRows: GEMV_ROWS, groupCols: COLS };
}
