// The one-query-per-invocation attention kernel (kernels/attention-direct.wgsl): variant
// `direct` of src/ops/attention.ts for devices with `subgroups` and a head dim of 64, which
// dispatches it with the tiled kernel's params. Built for CPU adapters, where it is the
// heuristic's choice.

import source from '../../kernels/attention-direct.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import type { DType } from '../tensor.js';
import { attentionLayout } from './attention-sg.js';

/** The head dim the kernel is written for (every UNet and CLIP attention). */
export const DIRECT_HEAD_DIM = 64;
/** Queries per workgroup, one per invocation. */
export const DIRECT_QUERIES = 64;

export const directKernel = defineKernel({ name: 'attention-direct', source, layout: attentionLayout });

/** Elements per vec4<u32> word the kernel binds q, k, v and out as. */
export const directWordElements = (dtype: DType): number => (dtype === 'f16' ? 8 : 4);
