// float64 reference of kernels/attention-direct.wgsl: the attention of kernels/attention.wgsl,
// which the direct kernel computes with one query per invocation.

export { attentionRef as attentionDirectRef } from './attention.js';
