// diffusers' Transformer2DModel as SDXL configures it (continuous input, use_linear_projection,
// layer-norm BasicTransformerBlocks with self-attention, cross-attention and a GEGLU
// feed-forward), and the Attention module (also the VAE's mid-block attention: a group norm
// in front, q/k/v biases, one head, on an image).

import { attention, type Columns, columns } from '../../ops/attention.js';
import { chain, keep, type Tensor, tidy } from '../../tensor.js';
import type { WeightScope } from '../weights.js';
import { FusedLinear } from './fused.js';
import { GroupNorm, LayerNorm, Linear } from './layers.js';

export interface AttentionOptions {
  readonly queryDim: number;
  /** Width of the context tokens for cross-attention; null for self-attention. */
  readonly crossAttentionDim: number | null;
  readonly heads: number;
  /** Width of each head; heads · dimHead is the inner width of q, k and v. */
  readonly dimHead: number;
  /** Biases on to_q / to_k / to_v (diffusers' `bias`: false in the UNet, true in the VAE). */
  readonly qkvBias: boolean;
  /** diffusers' norm_num_groups and eps (the VAE's): a GroupNorm over the input, which is then
   *  an image (B, queryDim, H, W) attended as its HW tokens; the result is an image too, with
   *  the input added (residual_connection). */
  readonly groupNorm?: { readonly groups: number; readonly eps: number };
}

export class Attention {
  private readonly groupNorm: GroupNorm | null;
  /** Self-attention: to_q|to_k|to_v as one matmul, q, k and v read in place by the attention. */
  private readonly toQkv: FusedLinear | null;
  /** Cross-attention: to_q of x (with the LayerNorm in front folded in), and to_k|to_v of the
   *  context, made once per context (contextKv). */
  private readonly toQ: FusedLinear | Linear | null;
  private readonly toKv: FusedLinear | null;
  private readonly toOut: Linear;

  /** `norm`: the LayerNorm applied to x in front of this module (BasicTransformerBlock's),
   *  folded into the projections of x. */
  constructor(w: WeightScope, readonly options: AttentionOptions, norm: LayerNorm | null = null) {
    const { queryDim, crossAttentionDim, heads, dimHead, qkvBias } = options;
    const inner = heads * dimHead;
    const contextDim = crossAttentionDim ?? queryDim;
    const registry = w.registry;
    this.groupNorm = options.groupNorm ? new GroupNorm(w.at('group_norm'), options.groupNorm.groups, queryDim, options.groupNorm.eps) : null;
    const toQ = new Linear(w.at('to_q'), queryDim, inner, qkvBias);
    const toK = new Linear(w.at('to_k'), contextDim, inner, qkvBias);
    const toV = new Linear(w.at('to_v'), contextDim, inner, qkvBias);
    this.toOut = new Linear(w.at('to_out', 0), inner, queryDim);
    if (crossAttentionDim === null) {
      this.toQkv = new FusedLinear(registry, `${w.prefix}.to_qkv`, [toQ, toK, toV], norm);
      this.toQ = this.toKv = null;
    } else {
      this.toQkv = null;
      this.toQ = norm ? new FusedLinear(registry, `${w.prefix}.norm_to_q`, [toQ], norm) : toQ;
      this.toKv = new FusedLinear(registry, `${w.prefix}.to_kv`, [toK, toV]);
    }
  }

  /** Cross-attention's k|v of `context` (B, S, crossAttentionDim) → (B, S, 2·inner): what
   *  forward takes, the same for every call on the same context. */
  contextKv(context: Tensor): Tensor {
    if (!this.toKv) throw new Error('Attention.contextKv: a self-attention has no context');
    return this.toKv.forward(context);
  }

  /** x (B, L, queryDim) attending to itself, or for cross-attention to the context whose
   *  contextKv is `kv` → (B, L, queryDim), plus `residual` (B, L, queryDim) when given. Scale
   *  dimHead^-½. With the group norm: x (B, queryDim, H, W) → x + attention (B, queryDim, H, W),
   *  L = HW. */
  forward(x: Tensor, kv: Tensor | null = null, residual?: Tensor): Tensor {
    const image = this.groupNorm ? ([x.shape[2]!, x.shape[3]!] as const) : undefined;
    return chain(
      x,
      (x) => attention(...this.qkv(x, kv), { heads: this.options.heads }), // (B, L, inner)
      // an image: written back as one, plus the input
      (h) => this.toOut.forward(h, image ? x : residual, { imageOut: image }), // (B, L, queryDim) or (B, queryDim, H, W)
    );
  }

  /** q, k, v as the attention reads them: column ranges of one q|k|v projection of x (an image
   *  x normalised and taken as tokens first), or q of x and k, v of `kv`. */
  private qkv(x: Tensor, kv: Tensor | null): [Tensor | Columns, Columns, Columns] {
    const inner = this.options.heads * this.options.dimHead;
    const norm = this.groupNorm;
    if (this.toQkv) {
      const toQkv = this.toQkv;
      const qkv = tidy(() => (norm ? toQkv.forward(norm.forward(x), { imageIn: true }) : toQkv.forward(x))); // (B, L, 3·inner)
      return [columns(qkv, 0, inner), columns(qkv, inner, inner), columns(qkv, 2 * inner, inner)];
    }
    if (!kv) throw new Error('Attention.forward: cross-attention needs its contextKv');
    return [this.toQ!.forward(x), columns(kv, 0, inner), columns(kv, inner, inner)]; // (B, L, inner), (B, S, inner) × 2
  }
}

/** FeedForward with activation_fn "geglu": net.0 = GEGLU (Linear dim → 2·4·dim, then
 *  h · gelu(gate)), net.2 = Linear 4·dim → dim. The GEGLU is the proj matmul's epilogue, and
 *  `norm` (the LayerNorm in front) is folded into it. */
export class FeedForward {
  private readonly proj: FusedLinear;
  private readonly out: Linear;

  constructor(w: WeightScope, dim: number, norm: LayerNorm, mult = 4) {
    const inner = dim * mult;
    const proj = new Linear(w.at('net', 0, 'proj'), dim, 2 * inner);
    this.proj = new FusedLinear(w.registry, `${w.prefix}.norm_net.0.proj`, [proj], norm);
    this.out = new Linear(w.at('net', 2), inner, dim);
  }

  /** norm(x) (B, L, dim) → (B, L, dim), plus `residual` when given. */
  forward(x: Tensor, residual?: Tensor): Tensor {
    return chain(
      x,
      (x) => this.proj.forward(x, { geglu: true }), // (B, L, inner)
      (h) => this.out.forward(h, residual), // (B, L, dim)
    );
  }
}

export interface BasicTransformerBlockOptions {
  readonly dim: number;
  readonly heads: number;
  readonly crossAttentionDim: number;
}

/** norm_type "layer_norm" (eps 1e-5): x += attn1(norm1(x)); x += attn2(norm2(x), context);
 *  x += ff(norm3(x)). */
export class BasicTransformerBlock {
  // norm1, norm2 and norm3 are folded into the projections that read their outputs.
  private readonly attn1: Attention;
  private readonly attn2: Attention;
  private readonly ff: FeedForward;

  constructor(w: WeightScope, options: BasicTransformerBlockOptions) {
    const { dim, heads, crossAttentionDim } = options;
    const dimHead = dim / heads;
    const norm = (i: number) => new LayerNorm(w.at(`norm${i}`), dim, 1e-5);
    this.attn1 = new Attention(w.at('attn1'), { queryDim: dim, crossAttentionDim: null, heads, dimHead, qkvBias: false }, norm(1));
    this.attn2 = new Attention(w.at('attn2'), { queryDim: dim, crossAttentionDim, heads, dimHead, qkvBias: false }, norm(2));
    this.ff = new FeedForward(w.at('ff'), dim, norm(3));
  }

  /** attn2's k|v of the context into `context`. */
  prepare(context: CrossAttentionContext): void {
    context.add(this.attn2, this.attn2.contextKv(context.states));
  }

  /** x (B, L, dim), and the prepared context (B, S, crossAttentionDim) → (B, L, dim). */
  forward(x: Tensor, context: CrossAttentionContext): Tensor {
    return chain(
      x,
      // 1. self-attention of norm1(x)
      (x) => this.attn1.forward(x, null, x), // (B, L, dim)
      // 2. cross-attention of norm2(h) to the prompt
      (h) => this.attn2.forward(h, context.kv(this.attn2), h), // (B, L, dim)
      // 3. feed-forward of norm3(h)
      (h) => this.ff.forward(h, h), // (B, L, dim)
    );
  }
}

/**
 * The text context of a forward: the prompt embeddings and each cross-attention's k|v of them,
 * made once (prepare) and read by every step, which sees the same context. Its tensors are the
 * holder's (taken out of any scope), released by release().
 */
export class CrossAttentionContext {
  private readonly kvs = new Map<Attention, Tensor>();

  constructor(
    /** encoder_hidden_states (B, S, crossAttentionDim). */
    readonly states: Tensor,
  ) {}

  add(attention: Attention, kv: Tensor): void {
    this.kvs.set(attention, keep(kv));
  }

  kv(attention: Attention): Tensor {
    const kv = this.kvs.get(attention);
    if (!kv) throw new Error('CrossAttentionContext: not prepared for this cross-attention (prepare it with the model it is used with)');
    return kv;
  }

  /** Bytes of the k|v tensors. */
  get byteLength(): number {
    return [...this.kvs.values()].reduce((sum, t) => sum + t.byteLength, 0);
  }

  release(): void {
    for (const kv of this.kvs.values()) kv.release();
    this.kvs.clear();
  }
}

export interface Transformer2DModelOptions {
  readonly channels: number;
  readonly heads: number;
  readonly layers: number;
  readonly crossAttentionDim: number;
  /** GroupNorm groups in front of proj_in (the UNet's norm_num_groups). */
  readonly groups: number;
}

export class Transformer2DModel {
  private readonly norm: GroupNorm;
  private readonly projIn: Linear;
  private readonly transformerBlocks: BasicTransformerBlock[];
  private readonly projOut: Linear;

  constructor(w: WeightScope, readonly options: Transformer2DModelOptions) {
    const { channels, heads, layers, crossAttentionDim, groups } = options;
    if (channels % heads !== 0) throw new Error(`${w.prefix}: ${channels} channels do not split into ${heads} heads`);
    // eps 1e-6 here, unlike the resnets' 1e-5: diffusers hard-codes it for Transformer2DModel.
    this.norm = new GroupNorm(w.at('norm'), groups, channels, 1e-6);
    this.projIn = new Linear(w.at('proj_in'), channels, channels);
    this.transformerBlocks = Array.from(
      { length: layers },
      (_, i) => new BasicTransformerBlock(w.at('transformer_blocks', i), { dim: channels, heads, crossAttentionDim }),
    );
    this.projOut = new Linear(w.at('proj_out'), channels, channels);
  }

  /** Every block's context k|v into `context`. */
  prepare(context: CrossAttentionContext): void {
    for (const block of this.transformerBlocks) block.prepare(context);
  }

  /** x (B, C, H, W), the prepared context (B, S, crossAttentionDim) → (B, C, H, W). */
  forward(x: Tensor, context: CrossAttentionContext): Tensor {
    const [, , height, width] = x.shape as [number, number, number, number];
    return chain(
      x,
      // 1. GroupNorm, proj_in (a Linear on the HW tokens: use_linear_projection), reading the image as tokens
      (x) => this.norm.forward(x), // (B, C, H, W)
      (h) => this.projIn.forward(h, undefined, { imageIn: true }), // (B, HW, C)
      // 2. transformer blocks
      ...this.transformerBlocks.map((block) => (h: Tensor) => block.forward(h, context)), // (B, HW, C)
      // 3. proj_out, written back as an image, plus the input
      (h) => this.projOut.forward(h, x, { imageOut: [height, width] }), // (B, C, H, W)
    );
  }
}
