// The elementwise family: activations and scaling (kernels/elementwise.wgsl), broadcast
// add / mul / axpby (kernels/binary.wgsl). The layout ops (layout.ts) and embeddings
// (embedding.ts) are re-exported, so models import the whole family from here.
// Every op splits tensors larger than one storage binding into windows.

import binarySource from '../../kernels/binary.wgsl';
import unarySource from '../../kernels/elementwise.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, formatShape, Tensor } from '../tensor.js';
import { alignedWindows, assertBindable, windowBinding } from './aligned-windows.js';
import { commonDtype, grid256, vectorDefines } from './common.js';

export { embedding, timestepEmbedding } from './embedding.js';
export { concat, transpose12, upsampleNearest, upsampleNearest2x } from './layout.js';

const unaryLayout = uniforms(['n', 'u32'], ['half', 'u32'], ['alpha', 'f32']);
const unaryKernel = defineKernel('elementwise', unarySource, unaryLayout);

/** kernels/elementwise.wgsl's MODE values. */
const Unary = { Silu: 0, Gelu: 1, GeluTanh: 2, QuickGelu: 3, Scale: 4, Geglu: 5 } as const;

/** x·σ(x). */
export function silu(x: Tensor): Tensor {
  return unary('silu', Unary.Silu, x, 0);
}

/** x·Φ(x) with the exact erf ('none', PyTorch's default) or the tanh approximation. */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return unary('gelu', approximate === 'tanh' ? Unary.GeluTanh : Unary.Gelu, x, 0);
}

/** x·σ(1.702x) (CLIP's quick_gelu). */
export function quickGelu(x: Tensor): Tensor {
  return unary('quickGelu', Unary.QuickGelu, x, 0);
}

function unary(op: string, mode: number, x: Tensor, alpha: number): Tensor {
  const dtype = commonDtype(op, x);
  const out = Tensor.empty(x.gpu, x.shape, dtype, op);
  const width = x.size % 4 === 0 ? 4 : 1;
  for (const w of alignedWindows(op, x.gpu, x.size, [bytesPerElement(dtype)])) {
    x.gpu.dispatch({
      kernel: unaryKernel,
      defines: { MODE: mode, ...vectorDefines(dtype, width) },
      layout: unaryLayout,
      uniforms: { n: w.count / width, half: 1, alpha },
      bindings: [windowBinding(op, x, w, 1), windowBinding(op, out, w, 1)],
      workgroups: grid256(w.count / width),
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
      kernel: unaryKernel,
      defines: { MODE: Unary.Geglu, ...vectorDefines(dtype, width) },
      layout: unaryLayout,
      uniforms: { n: (w.count * half) / width, half: half / width, alpha: 0 },
      bindings: [windowBinding('geglu', x, w, last), windowBinding('geglu', out, w, half)],
      workgroups: grid256((w.count * half) / width),
    });
  }
  return out;
}

const binaryLayout = uniforms(
  ['n', 'u32'],
  ['base', 'u32'],
  ['bbase', 'u32'],
  ['alpha', 'f32'],
  ['beta', 'f32'],
  ['d0', 'u32'],
  ['d1', 'u32'],
  ['d2', 'u32'],
  ['d3', 'u32'],
  ['d4', 'u32'],
  ['d5', 'u32'],
  ['s0', 'u32'],
  ['s1', 'u32'],
  ['s2', 'u32'],
  ['s3', 'u32'],
  ['s4', 'u32'],
  ['s5', 'u32'],
);
const binaryKernel = defineKernel('binary', binarySource, binaryLayout);
const MAX_DIMS = 6;

/** a + b, b broadcast onto a's shape. */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary('add', 0, a, b, 1, 1);
}

/** a · b, b broadcast onto a's shape. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary('mul', 1, a, b, 1, 1);
}

/** α·x + β·y (y broadcast onto x's shape), or α·x without y. */
export function axpby(alpha: number, x: Tensor, beta = 0, y: Tensor | null = null): Tensor {
  return y ? binary('axpby', 0, x, y, alpha, beta) : unary('axpby', Unary.Scale, x, alpha);
}

/** One dim of a's shape after merging neighbours b treats alike; stride is b's (0: broadcast). */
interface Dim {
  size: number;
  stride: number;
}

/** a's dims innermost first, merged where b is either contiguous along both or broadcast
 *  along both, so the kernel walks at most MAX_DIMS of them. */
function broadcastDims(op: string, a: readonly number[], b: readonly number[]): Dim[] {
  const mismatch = (): Error => new Error(`${op}: cannot broadcast ${formatShape(b)} onto ${formatShape(a)}`);
  if (b.length > a.length) throw mismatch();
  const merged: Array<{ size: number; full: boolean }> = [];
  for (let k = a.length - 1; k >= 0; k--) {
    const size = a[k]!;
    const bk = b[k - (a.length - b.length)] ?? 1;
    if (bk !== size && bk !== 1) throw mismatch();
    if (size === 1) continue;
    const full = bk === size;
    const last = merged[merged.length - 1];
    if (last?.full === full) last.size *= size;
    else merged.push({ size, full });
  }
  if (merged.length > MAX_DIMS) throw new Error(`${op}: broadcasting ${formatShape(b)} onto ${formatShape(a)} needs more than ${MAX_DIMS} dims`);
  let stride = 1;
  return merged.map(({ size, full }) => {
    const dim = { size, stride: full ? stride : 0 };
    if (full) stride *= size;
    return dim;
  });
}

function binary(op: string, mode: number, a: Tensor, b: Tensor, alpha: number, beta: number): Tensor {
  const dtype = commonDtype(op, a, b);
  const dims = broadcastDims(op, a.shape, b.shape);
  // b the size of a has a's layout and splits with it; a broadcast b is bound whole.
  const splitB = b.size === a.size;
  if (!splitB) assertBindable(op, b);
  const out = Tensor.empty(a.gpu, a.shape, dtype, op);
  const width = (dims[0]?.size ?? 1) % 4 === 0 ? 4 : 1;
  const bWidth = width === 4 && dims[0]!.stride === 1 ? 4 : 1;
  const bytes = bytesPerElement(dtype);
  const padded = Array.from({ length: MAX_DIMS }, (_, k) => dims[k] ?? { size: 1, stride: 0 });
  const [d0, d1, d2, d3, d4, d5] = padded.map((d) => d.size) as [number, number, number, number, number, number];
  const [s0, s1, s2, s3, s4, s5] = padded.map((d) => d.stride) as [number, number, number, number, number, number];
  const bTypes = vectorDefines(dtype, bWidth);
  for (const w of alignedWindows(op, a.gpu, a.size, [bytes])) {
    a.gpu.dispatch({
      kernel: binaryKernel,
      defines: { MODE: mode, ...vectorDefines(dtype, width), W: width, SB: bTypes.S, FB: bTypes.F, BW: bWidth },
      layout: binaryLayout,
      uniforms: { n: w.count / width, base: w.start, bbase: splitB ? w.start : 0, alpha, beta, d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5 },
      bindings: [
        windowBinding(op, a, w, 1),
        splitB ? windowBinding(op, b, w, 1) : b.binding,
        windowBinding(op, out, w, 1),
      ],
      workgroups: grid256(w.count / width),
    });
  }
  return out;
}
