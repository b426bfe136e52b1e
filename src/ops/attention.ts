import source from '../../kernels/attention.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import type { Gpu } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, storageBytes, Tensor } from '../tensor.js';

const layout = uniforms(
  ['lq', 'u32'], ['lk', 'u32'], ['heads', 'u32'], ['d', 'u32'], ['causal', 'u32'], ['qscale', 'f32'], ['split', 'u32'], ['bk', 'u32'],
);
const kernel = defineKernel('attention', source, layout);

// Must match kernels/attention.wgsl: its tiles fill WebGPU's default 16 KiB of workgroup memory.
const THREADS = 64;
const MAX_BK = 16;
const TILE_FLOATS = 4 * 384;
/** Head-dim columns per invocation: 32 keeps q and the accumulator (2 × 32 f32) in registers. */
const DCH = 32;
/** The head dim compiled in as a constant (every UNet and CLIP attention); others read it from params. */
const FAST_HEAD_DIM = 64;

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
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) checkBinding(gpu, name, t, shapes); // out is q's size
  const out = Tensor.empty(gpu, q.shape, q.dtype, 'attention');
  if (batch === 0 || lq === 0 || width === 0) return out;

  const split = Math.ceil(d / DCH); // invocations per query
  const bk = Math.min(MAX_BK, Math.floor(TILE_FLOATS / (split * DCH))); // keys per tile
  gpu.dispatch({
    kernel,
    defines: { T: q.dtype, DCH, HEAD_DIM: d === FAST_HEAD_DIM ? d : 0 },
    layout,
    uniforms: { lq, lk, heads, d, causal: causal ? 1 : 0, qscale: scale * Math.LOG2E, split, bk },
    bindings: [q.binding, k.binding, v.binding, out.binding],
    workgroups: [Math.ceil(lq / Math.floor(THREADS / split)), heads, batch],
  });
  return out;
}

// The kernel binds whole tensors: at real size the largest (VAE mid block at 1024², 16384×512
// f32) is 32 MiB, a quarter of the 128 MiB every device allows.
function checkBinding(gpu: Gpu, name: string, t: Tensor, shapes: string): void {
  const bytes = storageBytes(t.shape, t.dtype);
  const limit = gpu.limits.maxStorageBufferBindingSize;
  if (bytes > limit) throw new Error(`attention: ${name} is ${bytes} bytes, over maxStorageBufferBindingSize ${limit} (${shapes})`);
}
