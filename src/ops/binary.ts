// Broadcast add / mul / axpby (kernels/binary.wgsl): b broadcast onto a's shape (NumPy rules).
// Tensors larger than one storage binding are split into aligned windows; a broadcast b is
// bound whole.

import source from '../../kernels/binary.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, formatShape, Tensor } from '../tensor.js';
import { commonDtype, grid, vectorDefines, WG } from './common.js';
import { scale } from './elementwise.js';
import { alignedWindows, bindWhole, windowBinding } from './windows.js';

const kernel = defineKernel({
  name: 'binary',
  source,
  layout: uniforms(
    ['n', 'u32'], ['start', 'u32'], ['bStart', 'u32'], ['alpha', 'f32'], ['beta', 'f32'],
    ['d0', 'u32'], ['d1', 'u32'], ['d2', 'u32'], ['d3', 'u32'], ['d4', 'u32'], ['d5', 'u32'],
    ['s0', 'u32'], ['s1', 'u32'], ['s2', 'u32'], ['s3', 'u32'], ['s4', 'u32'], ['s5', 'u32'],
  ),
  constants: { WG },
});
/** The kernel's collapsed dims d0..d5. */
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
  return y ? binary('axpby', 0, x, y, alpha, beta) : scale(x, alpha, 'axpby');
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
  const bWhole = splitB ? null : bindWhole(op, b);
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
      kernel,
      defines: { MODE: mode, ...vectorDefines(dtype, width), W: width, SB: bTypes.S, FB: bTypes.F, BW: bWidth },
      uniforms: { n: w.count / width, start: w.start, bStart: splitB ? w.start : 0, alpha, beta, d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5 },
      bindings: [windowBinding(op, a, w, 1), bWhole ?? windowBinding(op, b, w, 1), windowBinding(op, out, w, 1)],
      workgroups: grid(w.count / width),
    });
  }
  return out;
}
