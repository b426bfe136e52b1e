// Batched transposition (kernels/transpose.wgsl), values copied bit for bit. Bound whole
// (real-size inputs are far below the binding limit).

import source from '../../kernels/transpose.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { commonDtype } from './common.js';
import { bindWhole } from './windows.js';

/** Side of the square tile one workgroup moves. */
const TILE = 32;
const kernel = defineKernel({
  name: 'transpose',
  source,
  layout: uniforms(['rows', 'u32'], ['cols', 'u32'], ['tilesX', 'u32'], ['tilesY', 'u32'], ['tiles', 'u32']),
  constants: { TILE },
});

/** (B, X, Y) → (B, Y, X). */
export function transpose12(x: Tensor): Tensor {
  const dtype = commonDtype('transpose12', x);
  if (x.shape.length !== 3) throw new Error(`transpose12: expected (B, X, Y), got ${formatShape(x.shape)}`);
  const input = bindWhole('transpose12', x);
  const [b, rows, cols] = x.shape as [number, number, number];
  const out = Tensor.empty(x.gpu, [b, cols, rows], dtype, 'transpose12');
  const tilesX = Math.ceil(cols / TILE);
  const tilesY = Math.ceil(rows / TILE);
  const tiles = b * tilesX * tilesY;
  x.gpu.dispatch({
    kernel,
    defines: { T: dtype },
    uniforms: { rows, cols, tilesX, tilesY, tiles },
    bindings: [input, out.binding],
    workgroups: foldWorkgroups(tiles),
  });
  return out;
}
