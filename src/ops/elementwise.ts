// Activations and scaling (kernels/elementwise.wgsl), one element or vec4 per invocation.
// Tensors larger than one storage binding are split into aligned windows.

import source from '../../kernels/elementwise.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, formatShape, Tensor } from '../tensor.js';
import { commonDtype, grid, vectorDefines, WG } from './common.js';
import { alignedWindows, windowBinding } from './windows.js';

const kernel = defineKernel({
  name: 'elementwise',
  source,
  layout: uniforms(['n', 'u32'], ['half', 'u32'], ['alpha', 'f32']),
  constants: { WG },
});

/** kernels/elementwise.wgsl's MODE values. */
const Mode = { Silu: 0, Gelu: 1, GeluTanh: 2, QuickGelu: 3, Scale: 4, Geglu: 5 } as const;

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
      uniforms: { n: w.count / width, half: 1, alpha },
      bindings: [windowBinding(op, x, w, 1), windowBinding(op, out, w, 1)],
      workgroups: grid(w.count / width),
    });
  }
  return out;
}

/** (..., 2N) → (..., N): x[..., :N] · gelu(x[..., N:]) (diffusers GEGLU: hidden, then gate). */
export function geglu(x: Tensor): Tensor {
  const dtype = commonDtype('geglu', x);
  const last = x.shape[x.shape.length - 1] ?? 0;
  if (x.shape.length === 0 || last % 2 !== 0) throw new Error(`geglu: last dim of ${formatShape(x.shape)} must be even`);
  const half = last / 2;
  const rows = x.size / Math.max(last, 1);
  const out = Tensor.empty(x.gpu, [...x.shape.slice(0, -1), half], dtype, 'geglu');
  const width = half % 4 === 0 ? 4 : 1;
  const bytes = bytesPerElement(dtype);
  for (const w of alignedWindows('geglu', x.gpu, rows, [last * bytes, half * bytes])) {
    x.gpu.dispatch({
      kernel,
      defines: { MODE: Mode.Geglu, ...vectorDefines(dtype, width) },
      uniforms: { n: (w.count * half) / width, half: half / width, alpha: 0 },
      bindings: [windowBinding('geglu', x, w, last), windowBinding('geglu', out, w, half)],
      workgroups: grid((w.count * half) / width),
    });
  }
  return out;
}
