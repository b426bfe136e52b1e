// LayerNorm over the last dim (kernels/layernorm.wgsl), one workgroup per row; inputs over the
// binding limit are split into windows of rows. The variant (workgroup size, subgroups on/off)
// is chosen per adapter by `gpu.tuning`.

import source from '../../kernels/layernorm.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups } from '../gpu/runtime.js';
import { tunableOp } from '../gpu/tuning.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { checkAffine } from './common.js';
import { synthetic } from './synthetic.js';
import { bindWhole, bindWindow, splitWindows, windowFits } from './windows.js';

const kernel = defineKernel({
  name: 'layernorm',
  source,
  layout: uniforms(['C', 'u32'], ['rows', 'u32'], ['xBase', 'u32'], ['outBase', 'u32'], ['eps', 'f32']),
});

const OP = tunableOp('layernorm', [kernel]);

/** Invocations per row (64, 128 or 256), and `-sg`: sums by subgroup operations (only where the
 *  device has `subgroups`). */
export const LAYERNORM_VARIANTS = ['64-sg', '128-sg', '256-sg', '64', '128', '256'] as const;
export type LayerNormVariant = (typeof LAYERNORM_VARIANTS)[number];

export interface LayerNormOptions {
  readonly eps: number;
  /** Force a variant (tests, benchmarks); by default `gpu.tuning` chooses. */
  readonly variant?: LayerNormVariant;
}

/** LayerNorm over the last dim: x (..., C), gamma and beta (C). */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, options: LayerNormOptions): Tensor {
  const gpu = x.gpu;
  const C = x.shape[x.shape.length - 1] ?? 0;
  if (C === 0) throw new Error(`layerNorm: x ${formatShape(x.shape)} has no last dim to normalise`);
  checkAffine('layerNorm', x, gamma, beta, C);
  const candidates = LAYERNORM_VARIANTS.filter((v) => gpu.subgroups || !v.endsWith('-sg'));
  const variant = options.variant ?? gpu.tuning.choose(OP, `${x.dtype} ${x.size / C}×${C}`, candidates, gpu.subgroups ? '64-sg' : '64', () => ({
    label: `layernorm ${formatShape(x.shape)} ${x.dtype}`,
    prepare: (g) => {
      const [xs, gs, bs] = [synthetic(g, 'tune.x', x.shape, x.dtype), synthetic(g, 'tune.gamma', [C], x.dtype), synthetic(g, 'tune.beta', [C], x.dtype)];
      return {
        run: (v) => layerNorm(xs, gs, bs, { ...options, variant: v }).release(),
        dispose: () => [xs, gs, bs].forEach((t) => t.release()),
      };
    },
  }));
  if (!candidates.includes(variant)) throw new Error(`layerNorm: variant ${variant} needs subgroups, which this device lacks`);
  const [wg, sg] = variant.split('-');
  const windows = splitWindows(
    x.size / C,
    (row, rows) => windowFits(gpu, x.dtype, row * C, rows * C),
    () => `layerNorm: one row of x ${formatShape(x.shape)} exceeds maxStorageBufferBindingSize`,
  );
  const out = Tensor.empty(gpu, x.shape, x.dtype, 'layerNorm');
  const affine = [bindWhole('layerNorm gamma', gamma), bindWhole('layerNorm beta', beta)];
  for (const w of windows) {
    const xs = bindWindow('layerNorm x', x, w.start * C, w.count * C);
    const os = bindWindow('layerNorm out', out, w.start * C, w.count * C);
    gpu.dispatch({
      kernel,
      defines: { T: x.dtype, WG: Number(wg), SUBGROUPS: sg === 'sg' },
      uniforms: { C, rows: w.count, xBase: xs.base, outBase: os.base, eps: options.eps },
      bindings: [xs.binding, ...affine, os.binding],
      workgroups: foldWorkgroups(w.count),
    });
  }
  return out;
}
