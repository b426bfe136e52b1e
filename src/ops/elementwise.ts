// Activations and scaling (kernels/elementwise.wgsl), one element or vec4 per invocation.
// Tensors larger than one storage binding are split into aligned windows.

import source from '../../kernels/elementwise.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, Tensor } from '../tensor.js';
import { commonDtype, grid, vectorDefines, WG } from './common.js';
import { alignedWindows, windowBinding } from './windows.js';

const kernel = defineKernel({
  name: 'elementwise',
  source,
  layout: uniforms(['n', 'u32'], ['alpha', 'f32']),
  constants: { WG },
});

/** kernels/elementwise.wgsl's MODE values. */
const Mode = { Silu: 0, Gelu: 1, GeluTanh: 2, QuickGelu: 3, Scale: 4 } as const;

/** x·σ(x). */
export function silu(x: Tensor): Tensor {
  return unary('silu', Mode.Silu, x, 0);
}

/** x·Φ(x) with the exact erf ('none', PyTorch's default) or the tanh approximation. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return unary('gelu', approximate === 'tanh' ? Mode.GeluTanh : Mode.Gelu, x, 0);
}

/** x·σ(1.702x) (CLIP's quick_gelu). */
export function quickGelu(x: Tensor): Tensor {
  return unary('quickGelu', Mode.QuickGelu, x, 0);
}

/** α·x (axpby without y, in src/ops/binary.ts). */
export function scale(x: Tensor, alpha: number, op = 'scale'): Tensor {
  return unary(op, Mode.Scale, x, alpha);
}

function unary(op: string, mode: number, x: Tensor, alpha: number): Tensor {
  const dtype = commonDtype(op, x);
  const out = Tensor.empty(x.gpu, x.shape, dtype, op);
  const width = x.size % 4 === 0 ? 4 : 1;
  for (const w of alignedWindows(op, x.gpu, x.size, [bytesPerElement(dtype)])) {
    x.gpu.dispatch({
      kernel,
      defines: { MODE: mode, ...vectorDefines(dtype, width) },
      uniforms: { n: w.count / width, alpha },
      bindings: [windowBinding(op, x, w, 1), windowBinding(op, out, w, 1)],
      workgroups: grid(w.count / width),
    });
  }
  return out;
}
