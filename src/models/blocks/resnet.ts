// diffusers' ResnetBlock2D (resnet_time_scale_shift "default", output_scale_factor 1, no
// up/down sampling inside): the UNet's resnets (with a time embedding, eps 1e-5) and the
// VAE's (tembChannels null, eps 1e-6).

import { add } from '../../ops/binary.js';
import { cast } from '../../ops/cast.js';
import { chain, type Tensor, tidy } from '../../tensor.js';
import type { Weight, WeightScope } from '../weights.js';
import { exactCopy } from './fused.js';
import { Conv2d, GroupNorm, Linear } from './layers.js';

export interface ResnetBlock2DOptions {
  readonly inChannels: number;
  readonly outChannels: number;
  /** Width of the time embedding, or null for a block without one (the VAE). */
  readonly tembChannels: number | null;
  readonly groups: number;
  readonly eps: number;
}

export class ResnetBlock2D {
  private readonly norm1: GroupNorm;
  private readonly conv1: Conv2d;
  private readonly timeEmbProj: Linear | null;
  /** time_emb_proj.bias + conv1.bias (derived): time_emb_proj then gives conv1 its bias per
   *  image, the time embedding added in conv1's epilogue. */
  private readonly tembBias: Weight | null;
  private readonly norm2: GroupNorm;
  private readonly conv2: Conv2d;
  /** 1×1 projection of the input when the channel count changes. */
  private readonly convShortcut: Conv2d | null;

  constructor(w: WeightScope, readonly options: ResnetBlock2DOptions) {
    const { inChannels, outChannels, tembChannels, groups, eps } = options;
    this.norm1 = new GroupNorm(w.at('norm1'), groups, inChannels, eps);
    this.conv1 = new Conv2d(w.at('conv1'), inChannels, outChannels, 3, { padding: 1 });
    this.timeEmbProj = tembChannels === null ? null : new Linear(w.at('time_emb_proj'), tembChannels, outChannels);
    const parts = this.timeEmbProj && [this.timeEmbProj.bias!, this.conv1.bias];
    this.tembBias = parts && w.registry.derive([[`${w.prefix}.time_emb_proj+conv1.bias`, [outChannels]]], parts, ([a, b]) =>
      tidy(() => [exactCopy(add(cast(a!, 'f32'), cast(b!, 'f32')), a!.dtype, `${w.registry.component}.${w.prefix}.time_emb_proj+conv1.bias`)]),
    )[0]!;
    this.norm2 = new GroupNorm(w.at('norm2'), groups, outChannels, eps);
    this.conv2 = new Conv2d(w.at('conv2'), outChannels, outChannels, 3, { padding: 1 });
    this.convShortcut = inChannels === outChannels ? null : new Conv2d(w.at('conv_shortcut'), inChannels, outChannels, 1);
  }

  /** x (B, in, H, W), SiLU(temb) (B, tembChannels) or null → (B, out, H, W). The SiLU of the
   *  time embedding is the caller's (the UNet makes it once for all its resnets). */
  forward(x: Tensor, tembSilu: Tensor | null): Tensor {
    const { timeEmbProj, tembBias } = this;
    if (timeEmbProj && !tembSilu) throw new Error('ResnetBlock2D: this block has a time embedding projection but was given no temb');
    return tidy(() => {
      const h = chain(
        x,
        // 1. norm1 → SiLU → conv1 + time_emb_proj(SiLU(temb)) broadcast over H, W: conv1's
        //    bias per image is time_emb_proj's output (its bias has conv1's folded in)
        (x) => this.norm1.forward(x, true), // (B, in, H, W)
        (h) => this.conv1.forward(h, undefined, timeEmbProj ? tidy(() => timeEmbProj.forward(tembSilu!, undefined, { bias: tembBias!.tensor })) : undefined), // (B, out, H, W)
        // 2. norm2 → SiLU
        (h) => this.norm2.forward(h, true), // (B, out, H, W)
      );
      // 3. conv2, plus the (projected) input
      return this.conv2.forward(h, this.convShortcut?.forward(x) ?? x); // (B, out, H, W)
    });
  }
}
