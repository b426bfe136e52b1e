// Concatenation along any axis (kernels/concat.wgsl): one dispatch per input, values copied
// bit for bit. Tensors are bound whole (real-size concats are far below the binding limit).

import source from '../../kernels/concat.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, numel, Tensor } from '../tensor.js';
import { commonDtype, grid, vectorDefines, WG } from './common.js';
import { bindWhole } from './windows.js';

const kernel = defineKernel({
  name: 'concat',
  source,
  layout: uniforms(['n', 'u32'], ['cols', 'u32'], ['dstCols', 'u32'], ['offset', 'u32']),
  constants: { WG },
});

/** Joins `tensors` along `axis` (negative counts from the end); all other dims must agree.
 *  `exact`: the result is allocated outside the pool (a weight made on the GPU). */
export function concat(tensors: readonly Tensor[], axis: number, options: { label?: string; exact?: boolean } = {}): Tensor {
  const first = tensors[0];
  if (!first) throw new Error('concat: no tensors');
  const dtype = commonDtype('concat', ...tensors);
  const rank = first.shape.length;
  const ax = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(ax) || ax < 0 || ax >= rank) throw new Error(`concat: axis ${axis} out of range for rank ${rank}`);
  const shapes = tensors.map((t) => formatShape(t.shape)).join(', ');
  for (const t of tensors) {
    if (t.shape.length !== rank || t.shape.some((d, k) => k !== ax && d !== first.shape[k])) {
      throw new Error(`concat: shapes ${shapes} differ outside axis ${axis}`);
    }
  }
  const total = tensors.reduce((s, t) => s + t.shape[ax]!, 0);
  const outer = numel(first.shape.slice(0, ax));
  const inner = numel(first.shape.slice(ax + 1));
  const out = Tensor.empty(first.gpu, first.shape.map((d, k) => (k === ax ? total : d)), dtype, options.label ?? 'concat', options.exact === true);
  const outBinding = bindWhole('concat', out);
  let offset = 0;
  for (const t of tensors) {
    const cols = t.shape[ax]! * inner;
    const width = cols % 4 === 0 && (total * inner) % 4 === 0 && (offset * inner) % 4 === 0 ? 4 : 1;
    t.gpu.dispatch({
      kernel,
      defines: vectorDefines(dtype, width),
      uniforms: { n: (outer * cols) / width, cols: cols / width, dstCols: (total * inner) / width, offset: (offset * inner) / width },
      bindings: [bindWhole('concat', t), outBinding],
      workgroups: grid((outer * cols) / width),
    });
    offset += t.shape[ax]!;
  }
  return out;
}
