// Row gather (kernels/embedding.wgsl): token embeddings, from host or GPU ids.

import source from '../../kernels/embedding.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, formatShape, Tensor } from '../tensor.js';
import { commonDtype, grid, vectorDefines, WG } from './common.js';
import { alignedWindows, bindWhole, windowBinding } from './windows.js';

const kernel = defineKernel({
  name: 'embedding',
  source,
  layout: uniforms(['n', 'u32'], ['cols', 'u32'], ['rowStart', 'u32'], ['rowCount', 'u32'], ['vocab', 'u32']),
  constants: { WG },
});

/**
 * Rows of `table` (V, C): `ids` on the host (Int32Array of length L → (L, C)), or on the GPU
 * as an f32 tensor of integer ids (shape S → (...S, C); an id outside 0..V−1 gives a zero
 * row). A table over the binding limit (bigG's 49408×1280 f32 is 253 MB) is bound in row
 * windows; host ids skip the windows none of them falls in.
 */
export function embedding(table: Tensor, ids: Int32Array | Tensor): Tensor {
  const dtype = commonDtype('embedding', table);
  if (table.shape.length !== 2) throw new Error(`embedding: table must be (V, C), got ${formatShape(table.shape)}`);
  const [vocab, c] = table.shape as [number, number];
  const gpu = table.gpu;
  let idTensor: Tensor;
  if (ids instanceof Int32Array) {
    const bad = ids.findIndex((id) => id < 0 || id >= vocab);
    if (bad >= 0) throw new Error(`embedding: id ${ids[bad]} at ${bad} outside the table's rows 0..${vocab - 1}`);
    // Float ids are exact far beyond any vocabulary (2^24), and f32 is a Tensor dtype.
    idTensor = Tensor.upload(gpu, Float32Array.from(ids), 'f32', [ids.length], 'f32', { label: 'embedding ids' });
  } else {
    if (ids.dtype !== 'f32') throw new Error(`embedding: id tensors hold integers as f32, got ${ids.dtype}`);
    idTensor = ids;
  }
  const out = Tensor.empty(gpu, [...idTensor.shape, c], dtype, 'embedding');
  const width = c % 4 === 0 ? 4 : 1;
  const n = (idTensor.size * c) / width;
  const [idBinding, outBinding] = [bindWhole('embedding ids', idTensor), bindWhole('embedding', out)];
  for (const w of alignedWindows('embedding', gpu, vocab, [c * bytesPerElement(dtype)])) {
    if (ids instanceof Int32Array && !ids.some((id) => id >= w.start && id < w.start + w.count)) continue;
    gpu.dispatch({
      kernel,
      defines: vectorDefines(dtype, width),
      uniforms: { n, cols: c / width, rowStart: w.start, rowCount: w.count, vocab },
      bindings: [idBinding, windowBinding('embedding', table, w, c), outBinding],
      workgroups: grid(n),
    });
  }
  if (idTensor !== ids) idTensor.release();
  return out;
}
