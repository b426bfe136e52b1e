// Multi-head scaled-dot-product attention (kernels/attention.wgsl), flash style. Tensors are
// bound whole: at real size the largest (VAE mid block at 1024², 16384×512 f32) is 32 MiB, a
// quarter of the 128 MiB every device allows.

import source from '../../kernels/attention.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { bindWhole } from './windows.js';

/** Invocations per workgroup. */
const THREADS = 64;
/** Keys per tile at most. */
const MAX_BK = 16;
/** vec4s per K or V tile: the two tiles and THREADS·MAX_BK partial dots fill WebGPU's default
 *  16 KiB of workgroup memory (2 × 6 KiB + 4 KiB). */
const TILE4 = 384;
/** Head-dim columns per invocation: 32 keeps q and the accumulator (2 × 32 f32) in registers. */
const DCH = 32;
/** The head dim compiled in as a constant (every UNet and CLIP attention); others read it from params. */
const FAST_HEAD_DIM = 64;

const kernel = defineKernel({
  name: 'attention',
  source,
  layout: uniforms(['lq', 'u32'], ['lk', 'u32'], ['heads', 'u32'], ['d', 'u32'], ['causal', 'u32'], ['qScale', 'f32'], ['split', 'u32'], ['bk', 'u32']),
  constants: { THREADS, MAX_BK, TILE4, DCH },
});
const TILE_FLOATS = 4 * TILE4;

export interface AttentionOptions {
  readonly heads: number;
  /** Mask key j > query i (CLIP's causal self-attention). */
  readonly causal?: boolean;
  /** Logit scale; default d^-½. */
  readonly scale?: number;
}

/**
 * Multi-head scaled-dot-product attention: q (B, Lq, heads·d), k and v (B, Lk, heads·d) →
 * (B, Lq, heads·d), softmax(q·kᵀ·scale)·v per head, f32 math for either storage dtype.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
  const { heads, causal = false } = options;
  const shapes = `q ${formatShape(q.shape)}, k ${formatShape(k.shape)}, v ${formatShape(v.shape)}`;
  if (q.shape.length !== 3 || k.shape.length !== 3 || v.shape.length !== 3) throw new Error(`attention: q, k, v must be (B, L, heads·d); got ${shapes}`);
  const [batch, lq, width] = q.shape as [number, number, number];
  const lk = k.shape[1]!;
  if (k.shape[0] !== batch || v.shape[0] !== batch || k.shape[2] !== width || v.shape[2] !== width || v.shape[1] !== lk) {
    throw new Error(`attention: k and v must be (${batch}, Lk, ${width}) like q; got ${shapes}`);
  }
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new Error(`attention: dtypes differ (q ${q.dtype}, k ${k.dtype}, v ${v.dtype})`);
  if (!Number.isInteger(heads) || heads < 1 || width % heads !== 0) throw new Error(`attention: ${heads} heads do not divide width ${width} (${shapes})`);
  if (lk === 0) throw new Error(`attention: no keys (${shapes})`);
  const d = width / heads;
  if (d > TILE_FLOATS) throw new Error(`attention: head dim ${d} exceeds ${TILE_FLOATS}, the widest key row a tile holds (${shapes})`);
  const scale = options.scale ?? 1 / Math.sqrt(d);
  if (!Number.isFinite(scale)) throw new Error(`attention: scale ${scale} is not finite`);

  const gpu = q.gpu;
  const inputs = [bindWhole('attention q', q), bindWhole('attention k', k), bindWhole('attention v', v)]; // out is q's size
  const out = Tensor.empty(gpu, q.shape, q.dtype, 'attention');
  if (batch === 0 || lq === 0 || width === 0) return out;

  const split = Math.ceil(d / DCH); // invocations per query
  const bk = Math.min(MAX_BK, Math.floor(TILE_FLOATS / (split * DCH))); // keys per tile
  gpu.dispatch({
    kernel,
    defines: { T: q.dtype, HEAD_DIM: d === FAST_HEAD_DIM ? d : 0 },
    uniforms: { lq, lk, heads, d, causal: causal ? 1 : 0, qScale: scale * Math.LOG2E, split, bk },
    bindings: [...inputs, out.binding],
    workgroups: [Math.ceil(lq / Math.floor(THREADS / split)), heads, batch],
  });
  return out;
}
