// diffusers' UNet levels for the SDXL family — DownBlock2D, CrossAttnDownBlock2D,
// UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D — and the samplers Downsample2D /
// Upsample2D (also used by the VAE). Down blocks return every output state, which the UNet
// keeps on its skip stack; up blocks take the skips they are handed (each is released once
// concatenated, its last use).

import { concat } from '../../ops/concat.js';
import { upsampleNearest, upsampleNearest2x } from '../../ops/upsample.js';
import { chain, take, type Tensor } from '../../tensor.js';
import type { WeightScope } from '../weights.js';
import { Conv2d } from './layers.js';
import { ResnetBlock2D } from './resnet.js';
import { type CrossAttentionContext, Transformer2DModel } from './transformer.js';

export interface Downsample2DOptions {
  readonly channels: number;
  readonly outChannels?: number;
  /** 1: a 3×3 stride-2 conv with padding 1 (UNet). 0: pad right and bottom by one, then the
   *  conv without padding (the VAE encoder; diffusers' Downsample2D with padding=0). */
  readonly padding: 0 | 1;
}

export class Downsample2D {
  private readonly conv: Conv2d;

  constructor(w: WeightScope, options: Downsample2DOptions) {
    const { channels, outChannels = channels, padding } = options;
    this.conv = new Conv2d(w.at('conv'), channels, outChannels, 3, { stride: 2, padding: padding === 1 ? 1 : [0, 1, 0, 1] });
  }

  /** x (B, C, H, W) → (B, out, ⌈H/2⌉, ⌈W/2⌉) (padding 1; ⌊H/2⌋ with padding 0). */
  forward(x: Tensor): Tensor {
    return this.conv.forward(x);
  }
}

/** An upsampler's output height and width. */
export type UpsampleSize = readonly [number, number];

export class Upsample2D {
  private readonly conv: Conv2d;

  constructor(w: WeightScope, options: { readonly channels: number; readonly outChannels?: number }) {
    const { channels, outChannels = channels } = options;
    this.conv = new Conv2d(w.at('conv'), channels, outChannels, 3, { padding: 1 });
  }

  /** x (B, C, H, W) → nearest to `size` (default 2H × 2W) → 3×3 conv → (B, out, H', W').
   *  The UNet passes its next skip's size, as diffusers' upsample_size, which is 2H − 1 where
   *  a down level rounded an odd side up. */
  forward(x: Tensor, size?: UpsampleSize): Tensor {
    return chain(
      x,
      (x) => (size ? upsampleNearest(x, size[0], size[1]) : upsampleNearest2x(x)), // (B, C, H', W')
      (h) => this.conv.forward(h), // (B, out, H', W')
    );
  }
}

/** What every resnet of a UNet shares. */
export interface ResnetSettings {
  readonly tembChannels: number;
  readonly groups: number;
  readonly eps: number;
}

/** What every Transformer2DModel of a level shares. */
export interface AttentionSettings {
  readonly heads: number;
  readonly transformerLayers: number;
  readonly crossAttentionDim: number;
}

export interface DownBlockOptions extends ResnetSettings {
  readonly inChannels: number;
  readonly outChannels: number;
  /** Resnets in the level (layers_per_block). */
  readonly layers: number;
  readonly addDownsample: boolean;
}

function downResnets(w: WeightScope, o: DownBlockOptions): ResnetBlock2D[] {
  return Array.from(
    { length: o.layers },
    (_, i) => new ResnetBlock2D(w.at('resnets', i), { ...o, inChannels: i === 0 ? o.inChannels : o.outChannels }),
  );
}

function downsampler(w: WeightScope, o: DownBlockOptions): Downsample2D | null {
  return o.addDownsample ? new Downsample2D(w.at('downsamplers', 0), { channels: o.outChannels, padding: 1 }) : null;
}

export class DownBlock2D {
  private readonly resnets: ResnetBlock2D[];
  private readonly downsampler: Downsample2D | null;

  constructor(w: WeightScope, options: DownBlockOptions) {
    this.resnets = downResnets(w, options);
    this.downsampler = downsampler(w, options);
  }

  /** x (B, in, H, W) → the output states, all the caller's: one (B, out, H, W) per resnet,
   *  then (B, out, ⌈H/2⌉, ⌈W/2⌉) when downsampling. The last is the block's output. */
  forward(x: Tensor, temb: Tensor): Tensor[] {
    const states: Tensor[] = [];
    let h = x;
    for (const resnet of this.resnets) {
      h = resnet.forward(h, temb); // (B, out, H, W)
      states.push(h);
    }
    if (this.downsampler) states.push(this.downsampler.forward(h)); // (B, out, ⌈H/2⌉, ⌈W/2⌉)
    return states;
  }
}

export class CrossAttnDownBlock2D {
  private readonly resnets: ResnetBlock2D[];
  private readonly attentions: Transformer2DModel[];
  private readonly downsampler: Downsample2D | null;

  constructor(w: WeightScope, options: DownBlockOptions & AttentionSettings) {
    this.resnets = downResnets(w, options);
    this.attentions = this.resnets.map(
      (_, i) => new Transformer2DModel(w.at('attentions', i), { ...options, channels: options.outChannels, layers: options.transformerLayers }),
    );
    this.downsampler = downsampler(w, options);
  }

  /** Each transformer's context k|v into `context`. */
  prepare(context: CrossAttentionContext): void {
    for (const attention of this.attentions) attention.prepare(context);
  }

  /** As DownBlock2D.forward, each resnet followed by its transformer on `context` (B, S, D). */
  forward(x: Tensor, temb: Tensor, context: CrossAttentionContext): Tensor[] {
    const states: Tensor[] = [];
    let h = x;
    this.resnets.forEach((resnet, i) => {
      h = chain(
        h,
        (h) => resnet.forward(h, temb), // (B, out, H, W)
        (h) => this.attentions[i]!.forward(h, context), // (B, out, H, W)
      );
      states.push(h);
    });
    if (this.downsampler) states.push(this.downsampler.forward(h)); // (B, out, ⌈H/2⌉, ⌈W/2⌉)
    return states;
  }
}

export class UNetMidBlock2DCrossAttn {
  private readonly resnets: ResnetBlock2D[];
  private readonly attentions: Transformer2DModel[];

  /** One transformer between two resnets (diffusers' num_layers 1). */
  constructor(w: WeightScope, options: ResnetSettings & AttentionSettings & { readonly channels: number }) {
    const { channels } = options;
    this.resnets = [0, 1].map((i) => new ResnetBlock2D(w.at('resnets', i), { ...options, inChannels: channels, outChannels: channels }));
    this.attentions = [new Transformer2DModel(w.at('attentions', 0), { ...options, layers: options.transformerLayers })];
  }

  /** Each transformer's context k|v into `context`. */
  prepare(context: CrossAttentionContext): void {
    for (const attention of this.attentions) attention.prepare(context);
  }

  /** x (B, C, H, W) → (B, C, H, W). */
  forward(x: Tensor, temb: Tensor, context: CrossAttentionContext): Tensor {
    return chain(
      x,
      (x) => this.resnets[0]!.forward(x, temb), // (B, C, H, W)
      ...this.attentions.flatMap((attention, i) => [
        (h: Tensor) => attention.forward(h, context), // (B, C, H, W)
        (h: Tensor) => this.resnets[i + 1]!.forward(h, temb), // (B, C, H, W)
      ]),
    );
  }
}

export interface UpBlockOptions extends ResnetSettings {
  /** Channels of the level's deepest skip (diffusers' in_channels). */
  readonly inChannels: number;
  /** Channels coming up from the level below (prev_output_channel). */
  readonly prevOutputChannels: number;
  readonly outChannels: number;
  /** Resnets in the level (layers_per_block + 1). */
  readonly layers: number;
  readonly addUpsample: boolean;
}

function upResnets(w: WeightScope, o: UpBlockOptions): ResnetBlock2D[] {
  return Array.from({ length: o.layers }, (_, i) => {
    const skipChannels = i === o.layers - 1 ? o.inChannels : o.outChannels;
    const hiddenChannels = i === 0 ? o.prevOutputChannels : o.outChannels;
    return new ResnetBlock2D(w.at('resnets', i), { ...o, inChannels: hiddenChannels + skipChannels });
  });
}

function upsampler(w: WeightScope, o: UpBlockOptions): Upsample2D | null {
  return o.addUpsample ? new Upsample2D(w.at('upsamplers', 0), { channels: o.outChannels }) : null;
}

/** concat(hidden, skip) on channels, then the resnet; takes the skip (its last use). */
function resnetOnSkip(resnet: ResnetBlock2D, h: Tensor, skip: Tensor, temb: Tensor): Tensor {
  return chain(
    h,
    (h) => concat([h, take(skip)], 1), // (B, Ch + Cs, H, W)
    (h) => resnet.forward(h, temb), // (B, out, H, W)
  );
}

/** The upsampler as chain steps: none without one. */
function upsampling(upsampler: Upsample2D | null, size?: UpsampleSize): Array<(h: Tensor) => Tensor> {
  return upsampler ? [(h) => upsampler.forward(h, size)] : [];
}

function checkSkips(block: string, skips: readonly Tensor[], resnets: number): void {
  if (skips.length !== resnets) throw new Error(`${block}: given ${skips.length} skip tensors for ${resnets} resnets`);
}

export class UpBlock2D {
  private readonly resnets: ResnetBlock2D[];
  private readonly upsampler: Upsample2D | null;

  constructor(w: WeightScope, options: UpBlockOptions) {
    this.resnets = upResnets(w, options);
    this.upsampler = upsampler(w, options);
  }

  /** x (B, prev, H, W) and this level's skips in stack order (the last is used first; each is
   *  taken and released once used) → (B, out, H', W') when upsampling (H' × W' =
   *  `upsampleSize`, by default 2H × 2W), else (B, out, H, W). */
  forward(x: Tensor, skips: readonly Tensor[], temb: Tensor, upsampleSize?: UpsampleSize): Tensor {
    checkSkips('UpBlock2D', skips, this.resnets.length);
    return chain(
      x,
      ...this.resnets.map((resnet, i) => (h: Tensor) => resnetOnSkip(resnet, h, skips[skips.length - 1 - i]!, temb)), // (B, out, H, W)
      ...upsampling(this.upsampler, upsampleSize), // (B, out, H', W')
    );
  }
}

export class CrossAttnUpBlock2D {
  private readonly resnets: ResnetBlock2D[];
  private readonly attentions: Transformer2DModel[];
  private readonly upsampler: Upsample2D | null;

  constructor(w: WeightScope, options: UpBlockOptions & AttentionSettings) {
    this.resnets = upResnets(w, options);
    this.attentions = this.resnets.map(
      (_, i) => new Transformer2DModel(w.at('attentions', i), { ...options, channels: options.outChannels, layers: options.transformerLayers }),
    );
    this.upsampler = upsampler(w, options);
  }

  /** Each transformer's context k|v into `context`. */
  prepare(context: CrossAttentionContext): void {
    for (const attention of this.attentions) attention.prepare(context);
  }

  /** As UpBlock2D.forward, each resnet followed by its transformer on `context` (B, S, D). */
  forward(x: Tensor, skips: readonly Tensor[], temb: Tensor, context: CrossAttentionContext, upsampleSize?: UpsampleSize): Tensor {
    checkSkips('CrossAttnUpBlock2D', skips, this.resnets.length);
    return chain(
      x,
      ...this.resnets.flatMap((resnet, i) => [
        (h: Tensor) => resnetOnSkip(resnet, h, skips[skips.length - 1 - i]!, temb), // (B, out, H, W)
        (h: Tensor) => this.attentions[i]!.forward(h, context), // (B, out, H, W)
      ]),
      ...upsampling(this.upsampler, upsampleSize), // (B, out, H', W')
    );
  }
}
