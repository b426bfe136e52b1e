// Multi-head scaled-dot-product attention (kernels/attention.wgsl; variants `sg`:
// kernels/attention-sg.wgsl, and `direct`: kernels/attention-direct.wgsl, where the device has
// subgroups), flash style. Tensors are bound whole: at real size the largest (VAE mid block at
// 1024², 16384×512 f32) is 32 MiB, a quarter of the 128 MiB every device allows.

import source from '../../kernels/attention.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { tunableOp } from '../gpu/tuning.js';
import { formatShape, Tensor } from '../tensor.js';
import { DIRECT_HEAD_DIM, DIRECT_QUERIES, directKernel, directWordElements } from './attention-direct.js';
import { attentionLayout, SG_QUERIES, sgKernel } from './attention-sg.js';
import { synthetic } from './synthetic.js';
import { bindWhole } from './windows.js';

/** Invocations per workgroup. */
const THREADS = 64;
/** Keys per tile at most. */
const MAX_BK = 16;
/** vec4s per K or V tile: the two tiles and THREADS·MAX_BK partial dots fill WebGPU's default
 *  16 KiB of workgroup memory (2 × 6 KiB + 4 KiB). */
const TILE4 = 384;
/** The head dim compiled in as a constant (every UNet and CLIP attention); others read it from params. */
const FAST_HEAD_DIM = 64;

const kernel = defineKernel({
  name: 'attention',
  source,
  layout: attentionLayout,
  constants: { THREADS, MAX_BK, TILE4 },
});
const TILE_FLOATS = 4 * TILE4;
const OP = tunableOp('attention', [kernel, sgKernel, directKernel]);

/**
 * `d32` / `d64`: head-dim columns per invocation (DCH; 32 keeps q and the accumulator, 2 × 32
 * f32, in registers; 64 gives a 64-wide head one invocation per query and no partial-dot
 * merge); `k16` / `k8`: keys per tile at most (fewer where a tile of wide heads holds fewer).
 * `sg`: one subgroup per query, its lanes splitting the keys (attention-sg.wgsl; only where
 * the device has `subgroups`). `direct`: one query per invocation, key and value rows shared
 * across lanes (attention-direct.wgsl; `subgroups`, head dim 64, offsets and strides in whole
 * 16-byte words).
 */
export const ATTENTION_VARIANTS = ['d32-k16', 'd32-k8', 'd64-k16', 'd64-k8', 'sg', 'direct'] as const;
export type AttentionVariant = (typeof ATTENTION_VARIANTS)[number];
type TiledVariant = Exclude<AttentionVariant, 'sg' | 'direct'>;

/** Columns per invocation, invocations per query and keys per tile of `variant` at head dim d. */
function plan(variant: TiledVariant, d: number): { dch: number; split: number; bk: number } {
  const [dch, cap] = variant.split('-').map((p) => Number(p.slice(1))) as [number, number];
  const split = Math.ceil(d / dch);
  return { dch, split, bk: Math.min(cap, MAX_BK, Math.floor(TILE_FLOATS / (split * dch))) };
}

export interface AttentionOptions {
  readonly heads: number;
  /** Mask key j > query i (CLIP's causal self-attention). */
  readonly causal?: boolean;
  /** Logit scale; default d^-½. */
  readonly scale?: number;
  /** Force a variant (tests, benchmarks); by default `gpu.tuning` chooses. */
  readonly variant?: AttentionVariant;
}

/** Columns [start, start + width) of every token of a (B, L, C) tensor: q, k or v where one
 *  projection made them side by side (q|k|v, k|v), read in place. */
export interface Columns {
  readonly tensor: Tensor;
  readonly start: number;
  readonly width: number;
}

/** Columns [start, start + width) of `tensor` (B, L, C). */
export function columns(tensor: Tensor, start: number, width: number): Columns {
  const c = tensor.shape[2];
  if (tensor.shape.length !== 3 || !Number.isInteger(start) || !Number.isInteger(width) || start < 0 || width < 1 || start + width > c!) {
    throw new Error(`attention: columns [${start}, ${start + width}) of a ${formatShape(tensor.shape)} tensor (B, L, C)`);
  }
  return { tensor, start, width };
}

const asColumns = (x: Tensor | Columns): Columns => (x instanceof Tensor ? { tensor: x, start: 0, width: x.shape[2] ?? 0 } : x);
const describe = (name: string, x: Columns): string =>
  `${name} ${formatShape(x.tensor.shape)}${x.width === x.tensor.shape[2] ? '' : `[…, ${x.start}:${x.start + x.width}]`}`;

/**
 * Multi-head scaled-dot-product attention: q (B, Lq, heads·d), k and v (B, Lk, heads·d) —
 * tensors, or column ranges of wider ones — → (B, Lq, heads·d), softmax(q·kᵀ·scale)·v per
 * head, f32 math for either storage dtype.
 */
export function attention(qIn: Tensor | Columns, kIn: Tensor | Columns, vIn: Tensor | Columns, options: AttentionOptions): Tensor {
  const { heads, causal = false } = options;
  const [q, k, v] = [asColumns(qIn), asColumns(kIn), asColumns(vIn)];
  const shapes = `${describe('q', q)}, ${describe('k', k)}, ${describe('v', v)}`;
  if (q.tensor.shape.length !== 3 || k.tensor.shape.length !== 3 || v.tensor.shape.length !== 3) throw new Error(`attention: q, k, v must be (B, L, heads·d); got ${shapes}`);
  const [batch, lq] = q.tensor.shape as [number, number];
  const width = q.width;
  const lk = k.tensor.shape[1]!;
  if (k.tensor.shape[0] !== batch || v.tensor.shape[0] !== batch || k.width !== width || v.width !== width || v.tensor.shape[1] !== lk) {
    throw new Error(`attention: k and v must be (${batch}, Lk, ${width}) like q; got ${shapes}`);
  }
  if (q.tensor.dtype !== k.tensor.dtype || q.tensor.dtype !== v.tensor.dtype) throw new Error(`attention: dtypes differ (q ${q.tensor.dtype}, k ${k.tensor.dtype}, v ${v.tensor.dtype})`);
  if (!Number.isInteger(heads) || heads < 1 || width % heads !== 0) throw new Error(`attention: ${heads} heads do not divide width ${width} (${shapes})`);
  if (lk === 0) throw new Error(`attention: no keys (${shapes})`);
  const d = width / heads;
  if (d > TILE_FLOATS) throw new Error(`attention: head dim ${d} exceeds ${TILE_FLOATS}, the widest key row a tile holds (${shapes})`);
  const scale = options.scale ?? 1 / Math.sqrt(d);
  if (!Number.isFinite(scale)) throw new Error(`attention: scale ${scale} is not finite`);

  const gpu = q.tensor.gpu;
  const [qb, kb, vb] = [bindWhole('attention q', q.tensor), bindWhole('attention k', k.tensor), bindWhole('attention v', v.tensor)];
  const out = Tensor.empty(gpu, [batch, lq, width], q.tensor.dtype, 'attention');
  if (batch === 0 || lq === 0 || width === 0) return out;

  const stride = (x: Columns): number => x.tensor.shape[2]!;
  // `direct` reads q, k and v as 16-byte words: every row and head must start on one.
  const wordElements = directWordElements(q.tensor.dtype);
  const direct = gpu.subgroups && d === DIRECT_HEAD_DIM && [q, k, v].every((x) => x.start % wordElements === 0 && stride(x) % wordElements === 0);
  const runs = (v: AttentionVariant): boolean => (v === 'sg' ? gpu.subgroups : v === 'direct' ? direct : true);
  // Variants the device runs that differ in effect at this head dim (a k8 whose tile holds ≤ 8
  // keys anyway is its k16).
  const candidates = ATTENTION_VARIANTS.filter((v) =>
    runs(v) && (v === 'sg' || v === 'direct' || v.endsWith('k16') || plan(v, d).bk < plan(v.replace('k8', 'k16') as TiledVariant, d).bk));
  // On a CPU adapter the tiled kernels' shared key reads cost a load per lane; `direct` ran
  // 6–7× faster there (BENCHMARKS.md, "Attention `direct` and group norm in words of 8 f16").
  const heuristic: AttentionVariant = gpu.tuning.cpu && direct ? 'direct' : 'd32-k16';
  const key = `${q.tensor.dtype} B${batch} ${lq}×${lk} ${heads}h×${d}${causal ? ' causal' : ''}`;
  const variant = options.variant ?? gpu.tuning.choose(OP, key, candidates, heuristic, () => ({
    label: `attention ${lq}×${lk} ${heads}h×${d}${causal ? ' causal' : ''} B${batch} ${q.tensor.dtype}`,
    prepare: (g) => {
      const make = (name: string, l: number): Tensor => synthetic(g, `tune.${name}`, [batch, l, width], q.tensor.dtype);
      const [qs, ks, vs] = [make('q', lq), make('k', lk), make('v', lk)];
      return {
        run: (v) => attention(qs, ks, vs, { ...options, variant: v }).release(),
        dispose: () => [qs, ks, vs].forEach((t) => t.release()),
      };
    },
  }));
  const uniforms = {
    lq, lk, heads, d, causal: causal ? 1 : 0, qScale: scale * Math.LOG2E, split: 0, bk: 0,
    qOff: q.start, qStride: stride(q), kOff: k.start, kStride: stride(k), vOff: v.start, vStride: stride(v),
  };
  const bindings = [qb, kb, vb, out.binding];
  if (!runs(variant)) throw new Error(`attention: variant ${variant} is not valid for ${shapes} on this device (valid: ${ATTENTION_VARIANTS.filter(runs).join(', ')})`);
  if (variant === 'direct') {
    gpu.dispatch({
      kernel: directKernel,
      defines: { HALF: q.tensor.dtype === 'f16', SUBGROUPS: true },
      uniforms,
      bindings,
      workgroups: [Math.ceil(lq / DIRECT_QUERIES), heads, batch],
    });
    return out;
  }
  if (variant === 'sg') {
    gpu.dispatch({
      kernel: sgKernel,
      defines: { T: q.tensor.dtype, SUBGROUPS: true, D4: 2 ** Math.ceil(Math.log2(Math.ceil(d / 4))) },
      uniforms,
      bindings,
      workgroups: [Math.ceil(lq / SG_QUERIES), heads, batch],
    });
    return out;
  }
  const { dch, split, bk } = plan(variant, d); // split: invocations per query; bk: keys per tile
  gpu.dispatch({
    kernel,
    defines: { T: q.tensor.dtype, DCH: dch, HEAD_DIM: d === FAST_HEAD_DIM ? d : 0 },
    uniforms: { ...uniforms, split, bk },
    bindings,
    workgroups: [Math.ceil(lq / Math.floor(THREADS / split)), heads, batch],
  });
  return out;
}
