// float64 reference of kernels/attention-sg.wgsl: the attention of kernels/attention.wgsl, which
// the subgroup kernel computes with another split of the work.

export { attentionRef as attentionSgRef } from './attention.js';
