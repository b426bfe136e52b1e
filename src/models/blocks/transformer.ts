// diffusers' Transformer2DModel as SDXL configures it (continuous input, use_linear_projection,
// layer-norm BasicTransformerBlocks with self-attention, cross-attention and a GEGLU
// feed-forward), and the Attention module (also the VAE's mid-block attention: q/k/v biases,
// one head).

import { attention } from '../../ops/attention.js';
import { add } from '../../ops/binary.js';
import { geglu } from '../../ops/elementwise.js';
import { transpose12 } from '../../ops/transpose.js';
import type { Tensor } from '../../tensor.js';
import type { WeightScope } from '../weights.js';
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
}

export class Attention {
  private readonly toQ: Linear;
  private readonly toK: Linear;
  private readonly toV: Linear;
  private readonly toOut: Linear;

  constructor(w: WeightScope, readonly options: AttentionOptions) {
    const { queryDim, crossAttentionDim, heads, dimHead, qkvBias } = options;
    const inner = heads * dimHead;
    const contextDim = crossAttentionDim ?? queryDim;
    this.toQ = new Linear(w.at('to_q'), queryDim, inner, qkvBias);
    this.toK = new Linear(w.at('to_k'), contextDim, inner, qkvBias);
    this.toV = new Linear(w.at('to_v'), contextDim, inner, qkvBias);
    this.toOut = new Linear(w.at('to_out', 0), inner, queryDim);
  }

  /** x (B, L, queryDim) attending to `context` (B, S, crossAttentionDim) or to itself when
   *  null → (B, L, queryDim), plus `residual` (B, L, queryDim) when given. Scale dimHead^-½. */
  forward(x: Tensor, context: Tensor | null, residual?: Tensor): Tensor {
    const source = context ?? x;
    const q = this.toQ.forward(x); // (B, L, inner)
    const k = this.toK.forward(source); // (B, S, inner)
    const v = this.toV.forward(source); // (B, S, inner)
    const o = attention(q, k, v, { heads: this.options.heads }); // (B, L, inner)
    q.release();
    k.release();
    v.release();
    const out = this.toOut.forward(o, residual); // (B, L, queryDim)
    o.release();
    return out;
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
    const p = this.proj.forward(x); // (B, L, 2·inner)
    const g = geglu(p); // (B, L, inner)
    p.release();
    const out = this.out.forward(g, residual); // (B, L, dim)
    g.release();
    return out;
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
    // 1. self-attention
    const n1 = this.norm1.forward(x); // (B, L, dim)
    const h1 = this.attn1.forward(n1, null, x); // (B, L, dim)
    n1.release();
    // 2. cross-attention to the prompt
    const n2 = this.norm2.forward(h1); // (B, L, dim)
    const h2 = this.attn2.forward(n2, context, h1); // (B, L, dim)
    n2.release();
    h1.release();
    // 3. feed-forward
    const n3 = this.norm3.forward(h2); // (B, L, dim)
    const out = this.ff.forward(n3, h2); // (B, L, dim)
    n3.release();
    h2.release();
    return out;
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
    const [batch, channels, height, width] = x.shape as [number, number, number, number];
    // 1. GroupNorm, to tokens, proj_in (a Linear on (B, HW, C): use_linear_projection)
    const n = this.norm.forward(x); // (B, C, H, W)
    const tokens = transpose12(n.reshape([batch, channels, height * width])); // (B, HW, C)
    n.release();
    let h = this.projIn.forward(tokens); // (B, HW, C)
    tokens.release();
    // 2. transformer blocks
    for (const block of this.transformerBlocks) {
      const next = block.forward(h, context); // (B, HW, C)
      h.release();
      h = next;
    }
    // 3. proj_out, back to an image, plus the input
    const p = this.projOut.forward(h); // (B, HW, C)
    h.release();
    const image = transpose12(p); // (B, C, HW)
    p.release();
    const out = add(image.reshape([batch, channels, height, width]), x); // (B, C, H, W)
    image.release();
    return out;
  }
}
