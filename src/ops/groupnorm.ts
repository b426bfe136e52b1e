// GroupNorm (kernels/groupnorm.wgsl): per-chunk statistics, then merge and normalise, or one
// pass per row; inputs over the binding limit are split into windows of chunks. The variant
// (pass split, workgroup size, subgroups on/off) is chosen per adapter by `gpu.tuning`; the
// word size by the shape.

import source from '../../kernels/groupnorm.wgsl';
import words from '../../kernels/include/groupnorm-words.wgsl';
import f16x8Words from '../../kernels/include/groupnorm-words-f16x8.wgsl';
import { type Defines, defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups } from '../gpu/runtime.js';
import { tunableOp } from '../gpu/tuning.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, formatShape, Tensor } from '../tensor.js';
import { checkAffine } from './common.js';
import { synthetic } from './synthetic.js';
import { bindWhole, bindWindow, splitWindows, windowFits } from './windows.js';

const layout = uniforms(
  ['L', 'u32'], ['S', 'u32'], ['cpg', 'u32'], ['G', 'u32'], ['chunk', 'u32'], ['nChunks', 'u32'],
  ['itemStart', 'u32'], ['itemCount', 'u32'], ['xStart', 'u32'], ['xBase', 'u32'], ['outBase', 'u32'], ['eps', 'f32'],
);
/** Words of 1 or 2 elements, either dtype. */
const kernel = defineKernel({ name: 'groupnorm', source: `${words}\n${source}`, layout });
/** Words of 8 f16 (vec4<u32>), for S % 8 = 0. */
const f16x8Kernel = defineKernel({ name: 'groupnorm-f16x8', source: `${f16x8Words}\n${source}`, layout });
const OP = tunableOp('groupnorm', [kernel, f16x8Kernel]);

/** Elements per chunk of the two-pass variants: 32 per thread at 64 threads; a 40·64² UNet
 *  group gives 80 workgroups. */
const CHUNK = 2048;

/**
 * `chunks`: statistics per 2048-element chunk, then merge and normalise (two dispatches, many
 * workgroups: for GPUs). `rows`: one workgroup per row does both in one dispatch (B·G
 * workgroups, the row read twice, the second time from cache: for CPUs). Then the workgroup
 * size, and `-sg`: sums by subgroup operations (only where the device has `subgroups`).
 */
export const GROUPNORM_VARIANTS = [
  'chunks-64-sg', 'chunks-256-sg', 'rows-8-sg', 'rows-64-sg', 'rows-256-sg',
  'chunks-64', 'chunks-256', 'rows-8', 'rows-64', 'rows-256',
] as const;
export type GroupNormVariant = (typeof GROUPNORM_VARIANTS)[number];

export interface GroupNormOptions {
  readonly groups: number;
  readonly eps: number;
  /** Apply SiLU after the affine (every resnet's norm → SiLU pair). */
  readonly silu?: boolean;
  /** Force a variant (tests, benchmarks); by default `gpu.tuning` chooses. */
  readonly variant?: GroupNormVariant;
}

/**
 * GroupNorm (torch.nn.GroupNorm): x (B, C, ...spatial) normalised over each group of C / groups
 * channels and all spatial positions, then scaled by gamma (C) and shifted by beta (C).
 * Any group size; inputs over the binding limit are split into windows of chunks (the `rows`
 * variants need one row per window).
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
  const silu = options.silu === true;

  // `rows` binds whole rows; a row's window starts up to 256 bytes below it (offset alignment).
  const rowsFit = windowFits(gpu, x.dtype, 0, L + 256 / bytesPerElement(x.dtype));
  const candidates = GROUPNORM_VARIANTS.filter((v) => (gpu.subgroups || !v.endsWith('-sg')) && (rowsFit || !v.startsWith('rows')));
  // A GPU wants the many workgroups of the two-pass chunks; on a CPU adapter one workgroup per
  // group reading its rows once from memory and once from cache ran 1.4–6× faster (llvmpipe,
  // BENCHMARKS.md "Heuristic vs tuned", 2026-12-07), and with 8 invocations, one CPU vector, up
  // to 2.3× faster again: llvmpipe then runs the barriers without switching between vectors,
  // and loads each channel's gamma and beta 8 times instead of 64 (BENCHMARKS.md, "Attention
  // `direct` and group norm in words of 8 f16").
  const split = gpu.tuning.cpu && rowsFit ? 'rows-8' : 'chunks-64';
  const heuristic: GroupNormVariant = gpu.subgroups ? `${split}-sg` : split;
  const variant = options.variant ?? gpu.tuning.choose(OP, `${x.dtype} ${formatShape(x.shape)} g${G}${silu ? ' silu' : ''}`, candidates, heuristic, () => ({
    label: `groupnorm ${formatShape(x.shape)} ${G}g${silu ? '+silu' : ''} ${x.dtype}`,
    prepare: (g) => {
      const [xs, gs, bs] = [synthetic(g, 'tune.x', x.shape, x.dtype), synthetic(g, 'tune.gamma', [C], x.dtype), synthetic(g, 'tune.beta', [C], x.dtype)];
      return {
        run: (v) => groupNorm(xs, gs, bs, { ...options, variant: v }).release(),
        dispose: () => [xs, gs, bs].forEach((t) => t.release()),
      };
    },
  }));
  if (!candidates.includes(variant)) throw new Error(`groupNorm: variant ${variant} is not valid for x ${formatShape(x.shape)} on this device (valid: ${candidates.join(', ')})`);
  const [mode, wg, sg] = variant.split('-') as ['chunks' | 'rows', string, string | undefined];
  const onePass = mode === 'rows';
  const chunk = onePass ? L : CHUNK;
  // The widest word that no channel boundary splits (nor a row or chunk: whole channels or
  // 2048 elements); windows then start on word boundaries too (kernel header).
  const f16x8 = x.dtype === 'f16' && S % 8 === 0;
  const words: Defines = f16x8
    ? { WIDTH: 8, W: 'vec4<u32>', F: 'vec4<f32>' }
    : S % 2 === 0
      ? { WIDTH: 2, W: x.dtype === 'f16' ? 'u32' : 'vec2<f32>', S: `vec2<${x.dtype}>`, F: 'vec2<f32>' }
      : { WIDTH: 1, W: x.dtype, S: x.dtype, F: 'f32' };
  const defines = { T: x.dtype, ...words, WG: Number(wg), SUBGROUPS: sg === 'sg' };

  const nChunks = Math.ceil(L / chunk);
  const items = B * G * nChunks;
  // Work item w is chunk w % nChunks of row ⌊w / nChunks⌋; items [first, first + count) cover
  // the contiguous elements [start, start + length).
  const span = (first: number, count: number): { start: number; length: number } => {
    const at = (w: number): number => Math.floor(w / nChunks) * L + (w % nChunks) * chunk;
    const last = first + count - 1;
    return { start: at(first), length: at(last) + Math.min(chunk, L - (last % nChunks) * chunk) - at(first) };
  };
  const windows = splitWindows(
    items,
    (first, count) => {
      const { start, length } = span(first, count);
      return windowFits(gpu, x.dtype, start, length);
    },
    () => `groupNorm: a ${chunk}-element ${onePass ? 'row' : 'chunk'} of x ${formatShape(x.shape)} exceeds maxStorageBufferBindingSize`,
  );

  const out = Tensor.empty(gpu, x.shape, x.dtype, 'groupNorm');
  const stats = Tensor.empty(gpu, [onePass ? 1 : items * 2], 'f32', 'groupNorm stats');
  const whole = [bindWhole('groupNorm gamma', gamma), bindWhole('groupNorm beta', beta), bindWhole('groupNorm stats', stats)];
  for (const STATS of onePass ? [false] : [true, false]) {
    for (const w of windows) {
      const { start, length } = span(w.start, w.count);
      const xs = bindWindow('groupNorm x', x, start, length);
      const os = bindWindow('groupNorm out', out, start, length);
      gpu.dispatch({
        kernel: f16x8 ? f16x8Kernel : kernel,
        defines: { ...defines, STATS, ONEPASS: onePass, SILU: !STATS && silu }, // one stats pipeline for both
        uniforms: { L, S, cpg: C / G, G, chunk, nChunks, itemStart: w.start, itemCount: w.count, xStart: start, xBase: xs.base, outBase: os.base, eps },
        bindings: [xs.binding, ...whole, os.binding],
        workgroups: foldWorkgroups(w.count),
      });
    }
  }
  stats.release(); // later dispatches of the batch that reuse it run after these
  return out;
}
