// diffusers' ResnetBlock2D (resnet_time_scale_shift "default", output_scale_factor 1, no
// up/down sampling inside): the UNet's resnets (with a time embedding, eps 1e-5) and the
// VAE's (tembChannels null, eps 1e-6).

import { add } from '../../ops/binary.js';
import { silu } from '../../ops/elementwise.js';
import { chain, type Tensor, tidy } from '../../tensor.js';
import type { WeightScope } from '../weights.js';
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
  private readonly norm2: GroupNorm;
  private readonly conv2: Conv2d;
  /** 1×1 projection of the input when the channel count changes. */
  private readonly convShortcut: Conv2d | null;

  constructor(w: WeightScope, readonly options: ResnetBlock2DOptions) {
    const { inChannels, outChannels, tembChannels, groups, eps } = options;
    this.norm1 = new GroupNorm(w.at('norm1'), groups, inChannels, eps);
    this.conv1 = new Conv2d(w.at('conv1'), inChannels, outChannels, 3, { padding: 1 });
    this.timeEmbProj = tembChannels === null ? null : new Linear(w.at('time_emb_proj'), tembChannels, outChannels);
    this.norm2 = new GroupNorm(w.at('norm2'), groups, outChannels, eps);
    this.conv2 = new Conv2d(w.at('conv2'), outChannels, outChannels, 3, { padding: 1 });
    this.convShortcut = inChannels === outChannels ? null : new Conv2d(w.at('conv_shortcut'), inChannels, outChannels, 1);
  }

  /** x (B, in, H, W), temb (B, tembChannels) or null → (B, out, H, W). */
  forward(x: Tensor, temb: Tensor | null): Tensor {
    const [batch] = x.shape as [number];
    const { outChannels } = this.options;
    const timeEmbProj = this.timeEmbProj;
    if (timeEmbProj && !temb) throw new Error('ResnetBlock2D: this block has a time embedding projection but was given no temb');
    return tidy(() => {
      const h = chain(
        x,
        // 1. norm1 → SiLU → conv1
        (x) => this.norm1.forward(x, true), // (B, in, H, W)
        (h) => this.conv1.forward(h), // (B, out, H, W)
        // 2. + time_emb_proj(SiLU(temb)), broadcast over H, W
        (h) => (timeEmbProj ? add(h, tidy(() => timeEmbProj.forward(silu(temb!))).reshape([batch, outChannels, 1, 1])) : h), // (B, out, H, W)
        // 3. norm2 → SiLU
        (h) => this.norm2.forward(h, true), // (B, out, H, W)
      );
      // 4. conv2, plus the (projected) input
      return this.conv2.forward(h, this.convShortcut?.forward(x) ?? x); // (B, out, H, W)
    });
  }
}
