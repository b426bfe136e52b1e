// GroupNorm (kernels/groupnorm.wgsl): per-chunk statistics, then merge and normalise; inputs
// over the binding limit are split into windows of chunks.

import source from '../../kernels/groupnorm.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { checkAffine } from './common.js';
import { bindWhole, bindWindow, splitWindows, windowFits } from './windows.js';

const kernel = defineKernel({
  name: 'groupnorm',
  source,
  layout: uniforms(
    ['L', 'u32'], ['S', 'u32'], ['cpg', 'u32'], ['G', 'u32'], ['chunk', 'u32'], ['nChunks', 'u32'],
    ['itemStart', 'u32'], ['itemCount', 'u32'], ['xStart', 'u32'], ['xBase', 'u32'], ['outBase', 'u32'], ['eps', 'f32'],
  ),
});

/** Elements per group-norm workgroup: 32 per thread; a 40·64² UNet group gives 80 workgroups. */
const CHUNK = 2048;

export interface GroupNormOptions {
  readonly groups: number;
  readonly eps: number;
  /** Apply SiLU after the affine (every resnet's norm → SiLU pair). */
  readonly silu?: boolean;
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
  // Work item w is chunk w % nChunks of row ⌊w / nChunks⌋; items [first, first + count) cover
  // the contiguous elements [start, start + length).
  const span = (first: number, count: number): { start: number; length: number } => {
    const at = (w: number): number => Math.floor(w / nChunks) * L + (w % nChunks) * CHUNK;
    const last = first + count - 1;
    return { start: at(first), length: at(last) + Math.min(CHUNK, L - (last % nChunks) * CHUNK) - at(first) };
  };
  const windows = splitWindows(
    items,
    (first, count) => {
      const { start, length } = span(first, count);
      return windowFits(gpu, x.dtype, start, length);
    },
    () => `groupNorm: a ${CHUNK}-element chunk of x ${formatShape(x.shape)} exceeds maxStorageBufferBindingSize`,
  );

  const out = Tensor.empty(gpu, x.shape, x.dtype, 'groupNorm');
  const stats = Tensor.empty(gpu, [items * 2], 'f32', 'groupNorm stats');
  const whole = [bindWhole('groupNorm gamma', gamma), bindWhole('groupNorm beta', beta), bindWhole('groupNorm stats', stats)];
  for (const STATS of [true, false]) {
    for (const w of windows) {
      const { start, length } = span(w.start, w.count);
      const xs = bindWindow('groupNorm x', x, start, length);
      const os = bindWindow('groupNorm out', out, start, length);
      gpu.dispatch({
        kernel,
        defines: { T: x.dtype, STATS, SILU: !STATS && options.silu === true, SUBGROUPS: gpu.subgroups }, // one stats pipeline for both
        uniforms: { L, S, cpg: C / G, G, chunk: CHUNK, nChunks, itemStart: w.start, itemCount: w.count, xStart: start, xBase: xs.base, outBase: os.base, eps },
        bindings: [xs.binding, ...whole, os.binding],
        workgroups: foldWorkgroups(w.count),
      });
    }
  }
  stats.release(); // later dispatches of the batch that reuse it run after these
  return out;
}
