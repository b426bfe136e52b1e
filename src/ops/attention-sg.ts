// The one-subgroup-per-query attention kernel (kernels/attention-sg.wgsl): attention for
// devices with `subgroups`, variant `sg` of src/ops/attention.ts, which dispatches it with
// the tiled kernel's params, so the two share one uniform layout.

import source from '../../kernels/attention-sg.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';

/** The params of both attention kernels (kernels/attention.wgsl documents them). */
export const attentionLayout = uniforms(
  ['lq', 'u32'], ['lk', 'u32'], ['heads', 'u32'], ['d', 'u32'], ['causal', 'u32'], ['qScale', 'f32'], ['split', 'u32'], ['bk', 'u32'],
  ['qOff', 'u32'], ['qStride', 'u32'], ['kOff', 'u32'], ['kStride', 'u32'], ['vOff', 'u32'], ['vStride', 'u32'],
);

/** Queries of one workgroup (its subgroups take them one by one). */
export const SG_QUERIES = 16;

export const sgKernel = defineKernel({ name: 'attention-sg', source, layout: attentionLayout, constants: { THREADS: 64, QUERIES: SG_QUERIES } });
