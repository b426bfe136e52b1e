// diffusers' Transformer2DModel as SDXL configures it (continuous input, use_linear_projection,
// layer-norm BasicTransformerBlocks with self-attention, cross-attention and a GEGLU
// feed-forward), and the Attention module (also the VAE's mid-block attention: a group norm
// in front, q/k/v biases, one head, on an image).

import { attention } from '../../ops/attention.js';
import { add } from '../../ops/binary.js';
import { geglu } from '../../ops/elementwise.js';
import { transpose12 } from '../../ops/transpose.js';
import { chain, type Tensor, tidy } from '../../tensor.js';
import type { WeightScope } from '../weights.js';
import { GroupNorm, LayerNorm, Linear } from './layers.js';

/** An image (B, C, H, W) as HW tokens of C channels: (B, HW, C). */
export function toTokens(x: Tensor): Tensor {
  const [batch, channels, height, width] = x.shape as [number, number, number, number];
  return transpose12(x.reshape([batch, channels, height * width]));
}

/** Tokens (B, HW, C) back to an image of `shape` (B, C, H, W). */
export function toImage(tokens: Tensor, shape: readonly number[]): Tensor {
  return transpose12(tokens).reshape(shape);
}

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
  private readonly toQ: Linear;
  private readonly toK: Linear;
  private readonly toV: Linear;
  private readonly toOut: Linear;

  constructor(w: WeightScope, readonly options: AttentionOptions) {
    const { queryDim, crossAttentionDim, heads, dimHead, qkvBias } = options;
    const inner = heads * dimHead;
    const contextDim = crossAttentionDim ?? queryDim;
    this.groupNorm = options.groupNorm ? new GroupNorm(w.at('group_norm'), options.groupNorm.groups, queryDim, options.groupNorm.eps) : null;
    this.toQ = new Linear(w.at('to_q'), queryDim, inner, qkvBias);
    this.toK = new Linear(w.at('to_k'), contextDim, inner, qkvBias);
    this.toV = new Linear(w.at('to_v'), contextDim, inner, qkvBias);
    this.toOut = new Linear(w.at('to_out', 0), inner, queryDim);
  }

  /** x (B, L, queryDim) attending to `context` (B, S, crossAttentionDim) or to itself when
   *  null → (B, L, queryDim), plus `residual` (B, L, queryDim) when given. Scale dimHead^-½.
   *  With the group norm: x (B, queryDim, H, W) → x + attention (B, queryDim, H, W), L = HW. */
  forward(x: Tensor, context: Tensor | null = null, residual?: Tensor): Tensor {
    const image = this.groupNorm ? x.shape : null;
    return chain(
      x,
      (x) => attention(...this.qkv(x, context), { heads: this.options.heads }), // (B, L, inner)
      (h) => this.toOut.forward(h, residual), // (B, L, queryDim)
      // back to an image, plus the input
      ...(image ? [(h: Tensor) => toImage(h, image), (h: Tensor) => add(h, x)] : []), // (B, queryDim, H, W)
    );
  }

  /** to_q of x, to_k and to_v of the context (x for self-attention). An image x is normalised
   *  and taken as tokens first, which are released once projected. */
  private qkv(x: Tensor, context: Tensor | null): [Tensor, Tensor, Tensor] {
    const norm = this.groupNorm;
    return tidy(() => {
      const h = norm ? tidy(() => toTokens(norm.forward(x))) : x; // (B, L, queryDim)
      const source = context ?? h;
      return [this.toQ.forward(h), this.toK.forward(source), this.toV.forward(source)]; // (B, L, inner), (B, S, inner) × 2
    });
  }
}

/** FeedForward with activation_fn "geglu": net.0 = GEGLU (Linear dim → 2·4·dim, then
 *  h · gelu(gate)), net.2 = Linear 4·dim → dim. */
export class FeedForward {
  private readonly proj: Linear;
  private readonly out: Linear;

  constructor(w: WeightScope, dim: number, mult = 4) {
    const inner = dim * mult;
    this.proj = new Linear(w.at('net', 0, 'proj'), dim, 2 * inner);
    this.out = new Linear(w.at('net', 2), inner, dim);
  }

  /** x (B, L, dim) → (B, L, dim), plus `residual` when given. */
  forward(x: Tensor, residual?: Tensor): Tensor {
    return chain(
      x,
      (x) => geglu(this.proj.forward(x)), // (B, L, 2·inner) → (B, L, inner)
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
  private readonly norm1: LayerNorm;
  private readonly attn1: Attention;
  private readonly norm2: LayerNorm;
  private readonly attn2: Attention;
  private readonly norm3: LayerNorm;
  private readonly ff: FeedForward;

  constructor(w: WeightScope, options: BasicTransformerBlockOptions) {
    const { dim, heads, crossAttentionDim } = options;
    const dimHead = dim / heads;
    this.norm1 = new LayerNorm(w.at('norm1'), dim, 1e-5);
    this.attn1 = new Attention(w.at('attn1'), { queryDim: dim, crossAttentionDim: null, heads, dimHead, qkvBias: false });
    this.norm2 = new LayerNorm(w.at('norm2'), dim, 1e-5);
    this.attn2 = new Attention(w.at('attn2'), { queryDim: dim, crossAttentionDim, heads, dimHead, qkvBias: false });
    this.norm3 = new LayerNorm(w.at('norm3'), dim, 1e-5);
    this.ff = new FeedForward(w.at('ff'), dim);
  }

  /** x (B, L, dim), context (B, S, crossAttentionDim) → (B, L, dim). */
  forward(x: Tensor, context: Tensor): Tensor {
    return chain(
      x,
      // 1. self-attention
      (x) => this.attn1.forward(this.norm1.forward(x), null, x), // (B, L, dim)
      // 2. cross-attention to the prompt
      (h) => this.attn2.forward(this.norm2.forward(h), context, h), // (B, L, dim)
      // 3. feed-forward
      (h) => this.ff.forward(this.norm3.forward(h), h), // (B, L, dim)
    );
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

  /** x (B, C, H, W), context (B, S, crossAttentionDim) → (B, C, H, W). */
  forward(x: Tensor, context: Tensor): Tensor {
    return chain(
      x,
      // 1. GroupNorm, to tokens, proj_in (a Linear on (B, HW, C): use_linear_projection)
      (x) => toTokens(this.norm.forward(x)), // (B, HW, C)
      (h) => this.projIn.forward(h), // (B, HW, C)
      // 2. transformer blocks
      ...this.transformerBlocks.map((block) => (h: Tensor) => block.forward(h, context)), // (B, HW, C)
      // 3. proj_out, back to an image, plus the input
      (h) => this.projOut.forward(h), // (B, HW, C)
      (h) => toImage(h, x.shape), // (B, C, H, W)
      (h) => add(h, x), // (B, C, H, W)
    );
  }
}
