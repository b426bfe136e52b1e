// LayerNorm over the last dim (kernels/layernorm.wgsl), one workgroup per row; inputs over the
// binding limit are split into windows of rows.

import source from '../../kernels/layernorm.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { checkAffine } from './common.js';
import { bindWhole, bindWindow, splitWindows, windowFits } from './windows.js';

const kernel = defineKernel({
  name: 'layernorm',
  source,
  layout: uniforms(['C', 'u32'], ['rows', 'u32'], ['xBase', 'u32'], ['outBase', 'u32'], ['eps', 'f32']),
});

/** LayerNorm over the last dim: x (..., C), gamma and beta (C). */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, options: { readonly eps: number }): Tensor {
  const gpu = x.gpu;
  const C = x.shape[x.shape.length - 1] ?? 0;
  if (C === 0) throw new Error(`layerNorm: x ${formatShape(x.shape)} has no last dim to normalise`);
  checkAffine('layerNorm', x, gamma, beta, C);
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
      defines: { T: x.dtype, SUBGROUPS: gpu.subgroups },
      uniforms: { C, rows: w.count, xBase: xs.base, outBase: os.base, eps: options.eps },
      bindings: [xs.binding, ...affine, os.binding],
      workgroups: foldWorkgroups(w.count),
    });
  }
  return out;
}
