import groupNormSource from '../../kernels/groupnorm.wgsl';
import layerNormSource from '../../kernels/layernorm.wgsl';
import reduceSource from '../../kernels/reduce.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { bindingWindow, largestFitting, windowFits } from './binding-window.js';

const groupNormLayout = uniforms(
  ['L', 'u32'], ['S', 'u32'], ['cpg', 'u32'], ['G', 'u32'], ['chunk', 'u32'], ['nChunks', 'u32'],
  ['w0', 'u32'], ['count', 'u32'], ['xStart', 'u32'], ['xBase', 'u32'], ['outBase', 'u32'], ['eps', 'f32'],
);
const groupNormKernel = defineKernel('groupnorm', reduceSource + groupNormSource, groupNormLayout);
const layerNormLayout = uniforms(['C', 'u32'], ['rows', 'u32'], ['xBase', 'u32'], ['outBase', 'u32'], ['eps', 'f32']);
const layerNormKernel = defineKernel('layernorm', reduceSource + layerNormSource, layerNormLayout);

/** Elements per group-norm workgroup: 8 per thread; a 40·64² UNet group gives 20 workgroups. */
const CHUNK = 2048;

export interface GroupNormOptions {
  readonly groups: number;
  readonly eps: number;
  /** Apply SiLU after the affine (every resnet's norm → SiLU pair). */
  readonly silu?: boolean;
}

function checkAffine(op: string, x: Tensor, gamma: Tensor, beta: Tensor, channels: number): void {
  for (const [name, t] of [['gamma', gamma], ['beta', beta]] as const) {
    if (t.shape.length !== 1 || t.shape[0] !== channels || t.dtype !== x.dtype) {
      throw new Error(`${op}: ${name} ${formatShape(t.shape)} ${t.dtype} must be (${channels}) ${x.dtype} for x ${formatShape(x.shape)}`);
    }
  }
}

/**
 * GroupNorm (torch.nn.GroupNorm): x (B, C, ...spatial) normalised over each group of C / groups
 * channels and all spatial positions, then scaled by gamma (C) and shifted by beta (C).
 * Two dispatches: per-chunk statistics, then merge and normalise; any group size, and inputs
 * over the binding limit are split into windows of chunks.
 */
export function groupNorm(x: Tensor, gamma: Tensor, beta: Tensor, options: GroupNormOptions): Tensor {
  const gpu = x.gpu;
  const { groups: G, eps } = options;
  if (x.shape.length < 2) throw new Error(`groupNorm: x ${formatShape(x.shape)} must be (B, C, ...spatial)`);
  const [B, C] = x.shape as [number, number];
  if (!Number.isInteger(G) || G < 1 || C % G !== 0) throw new Error(`groupNorm: ${C} channels of x ${formatShape(x.shape)} do not split into ${G} groups`);
  checkAffine('groupNorm', x, gamma, beta, C);
  const S = x.shape.slice(2).reduce((a, b) => a * b, 1);
  const L = (C / G) * S;
  const nChunks = Math.ceil(L / CHUNK);
  const items = B * G * nChunks;
  // Work item w is chunk w % nChunks of row ⌊w / nChunks⌋; items [w0, w0 + count) cover the
  // contiguous elements [start, start + length).
  const span = (w0: number, count: number): { start: number; length: number } => {
    const first = (w: number): number => Math.floor(w / nChunks) * L + (w % nChunks) * CHUNK;
    const last = w0 + count - 1;
    return { start: first(w0), length: first(last) + Math.min(CHUNK, L - (last % nChunks) * CHUNK) - first(w0) };
  };
  const windows: Array<{ w0: number; count: number }> = [];
  for (let w0 = 0; w0 < items; ) {
    const count = largestFitting(items - w0, (n) => {
      const { start, length } = span(w0, n);
      return windowFits(gpu, x.dtype, start, length);
    });
    if (count === 0) throw new Error(`groupNorm: a ${CHUNK}-element chunk of x ${formatShape(x.shape)} exceeds maxStorageBufferBindingSize`);
    windows.push({ w0, count });
    w0 += count;
  }

  const out = Tensor.empty(gpu, x.shape, x.dtype, 'groupNorm');
  const stats = Tensor.empty(gpu, [items * 2], 'f32', 'groupNorm stats');
  for (const STATS of [true, false]) {
    for (const { w0, count } of windows) {
      const { start, length } = span(w0, count);
      const xs = bindingWindow('groupNorm x', x, start, length);
      const os = bindingWindow('groupNorm out', out, start, length);
      gpu.dispatch({
        kernel: groupNormKernel,
        defines: { T: x.dtype, STATS, SILU: !STATS && options.silu === true }, // one stats pipeline for both
        layout: groupNormLayout,
        uniforms: { L, S, cpg: C / G, G, chunk: CHUNK, nChunks, w0, count, xStart: start, xBase: xs.base, outBase: os.base, eps },
        bindings: [xs.binding, gamma.binding, beta.binding, stats.binding, os.binding],
        workgroups: foldWorkgroups(count),
      });
    }
  }
  stats.release(); // later dispatches of the batch that reuse it run after these
  return out;
}

/** LayerNorm over the last dim: x (..., C), gamma and beta (C). */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, options: { readonly eps: number }): Tensor {
  const gpu = x.gpu;
  const C = x.shape[x.shape.length - 1] ?? 0;
  if (C === 0) throw new Error(`layerNorm: x ${formatShape(x.shape)} has no last dim to normalise`);
  checkAffine('layerNorm', x, gamma, beta, C);
  const rows = x.size / C;
  const windows: Array<{ r0: number; n: number }> = [];
  for (let r0 = 0; r0 < rows; ) {
    const n = largestFitting(rows - r0, (k) => windowFits(gpu, x.dtype, r0 * C, k * C));
    if (n === 0) throw new Error(`layerNorm: one row of x ${formatShape(x.shape)} exceeds maxStorageBufferBindingSize`);
    windows.push({ r0, n });
    r0 += n;
  }
  const out = Tensor.empty(gpu, x.shape, x.dtype, 'layerNorm');
  for (const { r0, n } of windows) {
    const xs = bindingWindow('layerNorm x', x, r0 * C, n * C);
    const os = bindingWindow('layerNorm out', out, r0 * C, n * C);
    gpu.dispatch({
      kernel: layerNormKernel,
      defines: { T: x.dtype },
      layout: layerNormLayout,
      uniforms: { C, rows: n, xBase: xs.base, outBase: os.base, eps: options.eps },
      bindings: [xs.binding, gamma.binding, beta.binding, os.binding],
      workgroups: foldWorkgroups(n),
    });
  }
  return out;
}
