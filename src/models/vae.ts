// diffusers' AutoencoderKL as SDXL uses it: typed config, weights by checkpoint name, the
// encoder (image → posterior mean / logvar / std) and the decoder (latents / scaling_factor →
// raw image), each tiled (decode-tiling.ts) for sizes whose activations would not fit a buffer.
// f32 by default (the SDXL VAE overflows in f16: force_upcast); f16 when loaded so.

import { add, mul } from '../ops/binary.js';
import { silu } from '../ops/elementwise.js';
import { type DiagonalGaussian, diagonalGaussian } from '../ops/posterior.js';
import { chain, type DType, formatShape, type Tensor, tidy } from '../tensor.js';
import { Conv2d, GroupNorm } from './blocks/layers.js';
import { ResnetBlock2D } from './blocks/resnet.js';
import { Attention } from './blocks/transformer.js';
import { Downsample2D, Upsample2D } from './blocks/unet-blocks.js';
import { ConfigReader } from './config.js';
import { CONFIG_BOUNDS } from './config-bounds.js';
import { UsageError } from '../errors.js';
import { decodeTiled, encodeTiled, planVaeTiling, type VaePass, type VaeTiling } from './decode-tiling.js';
import { WeightRegistry, WeightScope } from './weights.js';

export type { DiagonalGaussian } from '../ops/posterior.js';
export { type Span, tileSpans, type VaeTiling } from './decode-tiling.js';

export interface VaeConfig {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly latentChannels: number;
  /** Channels per level, encoder order (the decoder walks them reversed). */
  readonly blockOutChannels: readonly number[];
  /** Resnets per encoder level; decoder levels have one more. */
  readonly layersPerBlock: number;
  readonly normNumGroups: number;
  /** Latents are divided by it before decode and multiplied by it after encode. */
  readonly scalingFactor: number;
  /** The model overflows in f16 and should run in f32 (true for SDXL's VAE). */
  readonly forceUpcast: boolean;
  /** Whether the mid blocks have their attention. */
  readonly midBlockAddAttention: boolean;
}

/**
 * The dtype a VAE runs in beside text encoders and a UNet computing in `compute`: f32 when its
 * config says force_upcast (SDXL's VAE overflows in f16), else the compute dtype (the
 * community fp16-fix VAE, force_upcast false, runs in f16 where the adapter has shader-f16).
 */
export function vaeDtype(config: Pick<VaeConfig, 'forceUpcast'>, compute: DType): DType {
  return config.forceUpcast ? 'f32' : compute;
}

/** diffusers hard-codes this eps for every VAE norm (resnets, attention, conv_norm_out). */
const VAE_EPS = 1e-6;

/**
 * Parses vae/config.json: AutoencoderKL with DownEncoderBlock2D / UpDecoderBlock2D levels and
 * SiLU. Other block types, activations, latent normalisation (latents_mean / latents_std /
 * shift_factor) or dropped quant convs are errors naming the key; keys left out mean
 * diffusers' defaults.
 */
export function parseVaeConfig(json: unknown, where = 'vae/config.json'): VaeConfig {
  const c = new ConfigReader(json, where, CONFIG_BOUNDS.vae);
  c.oneOf('_class_name', ['AutoencoderKL'], 'AutoencoderKL');
  const blockOutChannels = c.intList('block_out_channels', undefined, [64]);
  const levels = blockOutChannels.length;
  const down = c.oneOfEach('down_block_types', ['DownEncoderBlock2D']);
  const up = c.oneOfEach('up_block_types', ['UpDecoderBlock2D']);
  if (down.length !== levels || up.length !== levels) {
    throw new UsageError(`${where}: ${levels} block_out_channels but ${down.length} down_block_types and ${up.length} up_block_types`);
  }
  c.literal('act_fn', ['silu'], 'silu');
  c.literal('latents_mean', [null], null);
  c.literal('latents_std', [null], null);
  c.literal('shift_factor', [null], null);
  c.literal('use_quant_conv', [true], true);
  c.literal('use_post_quant_conv', [true], true);
  const config: VaeConfig = {
    inChannels: c.int('in_channels', 3),
    outChannels: c.int('out_channels', 3),
    latentChannels: c.int('latent_channels', 4),
    blockOutChannels,
    layersPerBlock: c.int('layers_per_block', 1),
    normNumGroups: c.int('norm_num_groups', 32),
    scalingFactor: c.number('scaling_factor', 0.18215),
    forceUpcast: c.bool('force_upcast', true),
    midBlockAddAttention: c.bool('mid_block_add_attention', true),
  };
  blockOutChannels.forEach((channels, i) => {
    if (channels % config.normNumGroups !== 0) throw new UsageError(`${where}: block_out_channels[${i}] = ${channels} does not split into norm_num_groups = ${config.normNumGroups}`);
  });
  return config;
}

/**
 * Observes intermediates by the reference fixture's names: encode: encoder.conv_in,
 * encoder.down_blocks.{i}, encoder.mid_block, encoder.conv_norm_out (before SiLU),
 * encoder.conv_out, quant_conv; decode: post_quant_conv, decoder.conv_in, decoder.mid_block,
 * decoder.up_blocks.{i}, decoder.conv_norm_out (before SiLU), decoder.conv_out. The tensor is
 * valid only during the call and must not be released; `t.read()` may be started there.
 */
export type VaeHooks = (name: string, tensor: Tensor) => void;

/** Resnet → attention → resnet (no time embedding), at the deepest level. */
export class UNetMidBlock2D {
  private readonly resnets: ResnetBlock2D[];
  private readonly attention: Attention | null;

  constructor(w: WeightScope, channels: number, groups: number, addAttention: boolean) {
    const resnet = { inChannels: channels, outChannels: channels, tembChannels: null, groups, eps: VAE_EPS };
    this.resnets = [0, 1].map((i) => new ResnetBlock2D(w.at('resnets', i), resnet));
    // diffusers' Attention as the VAE configures it: a group norm in front, one head as wide
    // as the channels, q/k/v biases, on the image.
    const attention = { queryDim: channels, crossAttentionDim: null, heads: 1, dimHead: channels, qkvBias: true, groupNorm: { groups, eps: VAE_EPS } };
    this.attention = addAttention ? new Attention(w.at('attentions', 0), attention) : null;
  }

  /** x (B, C, H, W) → (B, C, H, W). */
  forward(x: Tensor): Tensor {
    const attention = this.attention;
    return chain(
      x,
      (x) => this.resnets[0]!.forward(x, null), // (B, C, H, W)
      ...(attention ? [(h: Tensor) => attention.forward(h)] : []), // (B, C, H, W)
      (h) => this.resnets[1]!.forward(h, null), // (B, C, H, W)
    );
  }
}

/** A level's resnets as chain steps. */
function resnetSteps(resnets: readonly ResnetBlock2D[]): Array<(h: Tensor) => Tensor> {
  return resnets.map((resnet) => (h) => resnet.forward(h, null));
}

/** The resnets of an encoder or decoder level: the first maps in → out channels. */
function levelResnets(w: WeightScope, o: LevelOptions): ResnetBlock2D[] {
  return Array.from(
    { length: o.layers },
    (_, i) => new ResnetBlock2D(w.at('resnets', i), { inChannels: i === 0 ? o.inChannels : o.outChannels, outChannels: o.outChannels, tembChannels: null, groups: o.groups, eps: VAE_EPS }),
  );
}

interface LevelOptions {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly layers: number;
  readonly groups: number;
}

export class DownEncoderBlock2D {
  private readonly resnets: ResnetBlock2D[];
  private readonly downsampler: Downsample2D | null;

  constructor(w: WeightScope, o: LevelOptions & { readonly addDownsample: boolean }) {
    this.resnets = levelResnets(w, o);
    // diffusers' Downsample2D with padding 0: pad right and bottom by one, stride-2 conv.
    this.downsampler = o.addDownsample ? new Downsample2D(w.at('downsamplers', 0), { channels: o.outChannels, padding: 0 }) : null;
  }

  /** x (B, in, H, W) → (B, out, ⌊H/2⌋, ⌊W/2⌋) when downsampling, else (B, out, H, W); x stays. */
  forward(x: Tensor): Tensor {
    const downsampler = this.downsampler;
    return chain(
      x,
      ...resnetSteps(this.resnets), // (B, out, H, W)
      ...(downsampler ? [(h: Tensor) => downsampler.forward(h)] : []), // (B, out, H/2, W/2)
    );
  }
}

export class UpDecoderBlock2D {
  private readonly resnets: ResnetBlock2D[];
  private readonly upsampler: Upsample2D | null;

  constructor(w: WeightScope, o: LevelOptions & { readonly addUpsample: boolean }) {
    this.resnets = levelResnets(w, o);
    this.upsampler = o.addUpsample ? new Upsample2D(w.at('upsamplers', 0), { channels: o.outChannels }) : null;
  }

  /** x (B, in, H, W) → (B, out, 2H, 2W) when upsampling, else (B, out, H, W); x stays. */
  forward(x: Tensor): Tensor {
    const upsampler = this.upsampler;
    return chain(
      x,
      ...resnetSteps(this.resnets), // (B, out, H, W)
      ...(upsampler ? [(h: Tensor) => upsampler.forward(h)] : []), // (B, out, 2H, 2W)
    );
  }
}

/** Passes `t` to the hook, if any, and returns it. */
function observe(hook: VaeHooks | null, name: string, t: Tensor): Tensor {
  hook?.(name, t);
  return t;
}

/** conv_norm_out → SiLU → conv_out; fused norm+SiLU unless the norm's output is observed. */
function normActConv(norm: GroupNorm, conv: Conv2d, x: Tensor, hook: VaeHooks | null): Tensor {
  return chain(
    x,
    (x) => (hook ? silu(observe(hook, 'conv_norm_out', norm.forward(x))) : norm.forward(x, true)), // (B, C, H, W)
    (h) => observe(hook, 'conv_out', conv.forward(h)), // (B, out, H, W)
  );
}

export class Encoder {
  private readonly convIn: Conv2d;
  private readonly downBlocks: DownEncoderBlock2D[];
  private readonly midBlock: UNetMidBlock2D;
  private readonly convNormOut: GroupNorm;
  private readonly convOut: Conv2d;

  constructor(w: WeightScope, config: VaeConfig) {
    const { blockOutChannels: channels, normNumGroups: groups, layersPerBlock: layers } = config;
    const top = channels[channels.length - 1]!;
    this.convIn = new Conv2d(w.at('conv_in'), config.inChannels, channels[0]!, 3, { padding: 1 });
    this.downBlocks = channels.map(
      (out, i) => new DownEncoderBlock2D(w.at('down_blocks', i), { inChannels: channels[Math.max(i - 1, 0)]!, outChannels: out, layers, groups, addDownsample: i < channels.length - 1 }),
    );
    this.midBlock = new UNetMidBlock2D(w.at('mid_block'), top, groups, config.midBlockAddAttention);
    this.convNormOut = new GroupNorm(w.at('conv_norm_out'), groups, top, VAE_EPS);
    // double_z: a mean and a logvar channel per latent channel.
    this.convOut = new Conv2d(w.at('conv_out'), top, 2 * config.latentChannels, 3, { padding: 1 });
  }

  /** x (B, in, H, W) → moments (B, 2·latent, H/s, W/s), s = 2^(levels − 1); x stays. */
  forward(x: Tensor, hook: VaeHooks | null): Tensor {
    return chain(
      x,
      // 1. conv_in
      (x) => observe(hook, 'conv_in', this.convIn.forward(x)), // (B, C0, H, W)
      // 2. down levels, each halving H and W but the last
      ...this.downBlocks.map((block, i) => (h: Tensor) => observe(hook, `down_blocks.${i}`, block.forward(h))), // (B, C_i, H/2^(i+1), W/2^(i+1)), the last level (B, C_last, H/s, W/s)
      // 3. mid block
      (h) => observe(hook, 'mid_block', this.midBlock.forward(h)), // (B, C_last, H/s, W/s)
      // 4. GroupNorm → SiLU → conv_out
      (h) => normActConv(this.convNormOut, this.convOut, h, hook), // (B, 2·latent, H/s, W/s)
    );
  }
}

export class Decoder {
  private readonly convIn: Conv2d;
  private readonly midBlock: UNetMidBlock2D;
  private readonly upBlocks: UpDecoderBlock2D[];
  private readonly convNormOut: GroupNorm;
  private readonly convOut: Conv2d;

  constructor(w: WeightScope, config: VaeConfig) {
    const { normNumGroups: groups, layersPerBlock } = config;
    const reversed = [...config.blockOutChannels].reverse();
    this.convIn = new Conv2d(w.at('conv_in'), config.latentChannels, reversed[0]!, 3, { padding: 1 });
    this.midBlock = new UNetMidBlock2D(w.at('mid_block'), reversed[0]!, groups, config.midBlockAddAttention);
    this.upBlocks = reversed.map(
      (out, i) =>
        new UpDecoderBlock2D(w.at('up_blocks', i), { inChannels: reversed[Math.max(i - 1, 0)]!, outChannels: out, layers: layersPerBlock + 1, groups, addUpsample: i < reversed.length - 1 }),
    );
    this.convNormOut = new GroupNorm(w.at('conv_norm_out'), groups, reversed[reversed.length - 1]!, VAE_EPS);
    this.convOut = new Conv2d(w.at('conv_out'), reversed[reversed.length - 1]!, config.outChannels, 3, { padding: 1 });
  }

  /** z (B, latent, h, w) → image (B, out, h·s, w·s), s = 2^(levels − 1); z stays. */
  forward(z: Tensor, hook: VaeHooks | null): Tensor {
    return chain(
      z,
      // 1. conv_in
      (z) => observe(hook, 'conv_in', this.convIn.forward(z)), // (B, C_last, h, w)
      // 2. mid block
      (h) => observe(hook, 'mid_block', this.midBlock.forward(h)), // (B, C_last, h, w)
      // 3. up levels, each doubling H and W but the last
      ...this.upBlocks.map((block, i) => (h: Tensor) => observe(hook, `up_blocks.${i}`, block.forward(h))), // (B, C_(L-1-i), 2^(i+1)·h, 2^(i+1)·w), the last level (B, C0, s·h, s·w)
      // 4. GroupNorm → SiLU → conv_out
      (h) => normActConv(this.convNormOut, this.convOut, h, hook), // (B, out, s·h, s·w)
    );
  }
}

export class AutoencoderKL {
  /** Where the weights are declared; `await registry.load(gpu, source, dtype)` before use
   *  (f32 for SDXL's VAE: force_upcast). */
  readonly registry: WeightRegistry;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  private readonly quantConv: Conv2d;
  private readonly postQuantConv: Conv2d;
  /**
   * Largest single activation buffer an untiled decode may use, in bytes; larger decodes are
   * tiled (planVaeTiling). null: the device's maxBufferSize, i.e. tile only when a buffer
   * could not be allocated. The storage binding limit does not bound it: every decoder op
   * splits its bindings, and tiles change the image (per-tile GroupNorm statistics), so the
   * exact untiled decode is kept whenever it can run. Lower it to bound decode memory.
   */
  maxActivationBytes: number | null = null;
  /** The same bound for the encode (image-to-image): larger encodes are tiled as diffusers'
   *  tiled_encode does, which changes the latents (per-tile GroupNorm statistics). */
  maxEncodeActivationBytes: number | null = null;

  constructor(readonly config: VaeConfig, w: WeightScope) {
    this.registry = w.registry;
    this.encoder = new Encoder(w.at('encoder'), config);
    this.decoder = new Decoder(w.at('decoder'), config);
    const latent = config.latentChannels;
    this.quantConv = new Conv2d(w.at('quant_conv'), 2 * latent, 2 * latent, 1);
    this.postQuantConv = new Conv2d(w.at('post_quant_conv'), latent, latent, 1);
  }

  /** The model with its weights declared in a fresh registry named `component`. */
  static create(config: VaeConfig, component = 'vae'): AutoencoderKL {
    return new AutoencoderKL(config, new WeightScope(new WeightRegistry(component)));
  }

  /** Latent pixels per image pixel along each axis: 2^(levels − 1) (8 for SDXL). */
  get scale(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  /** The dtype the weights were loaded in: inputs must match it. */
  get dtype(): DType {
    return this.postQuantConv.weight.tensor.dtype;
  }

  /**
   * image (B, in, H, W) in [−1, 1], H and W multiples of `scale` → the posterior
   * (B, latent, H/scale, W/scale) each; unscaled (multiply a sample by scaling_factor). Tiled
   * automatically when an activation would exceed `maxEncodeActivationBytes` (see
   * planVaeTiling); hooks observe untiled encodes only.
   */
  encode(image: Tensor, hooks?: VaeHooks): DiagonalGaussian {
    this.checkImage('encode', image);
    const tiling = this.tiling('encode', this.maxEncodeActivationBytes, image.gpu.limits, [image.shape[0]!, this.config.latentChannels, image.shape[2]! / this.scale, image.shape[3]! / this.scale]);
    if (tiling && hooks) throw new Error(`AutoencoderKL.encode: hooks observe untiled encodes only; image ${formatShape(image.shape)} needs tiling ${JSON.stringify(tiling)}`);
    return tidy(() => {
      // 1. encoder → quant_conv → moments, whole or over blended tiles
      const moments = tiling ? encodeTiled(this, image, tiling) : this.encodeMoments(image, hooks ?? null); // (B, 2·latent, h, w)
      // 2. mean, clamped logvar, std
      return diagonalGaussian(moments); // 3 × (B, latent, h, w)
    });
  }

  /** encode() over tiles as `tiling` says (see decode-tiling.ts's encodeTiled). */
  encodeTiled(image: Tensor, tiling: VaeTiling): DiagonalGaussian {
    this.checkImage('encodeTiled', image);
    return tidy(() => diagonalGaussian(encodeTiled(this, image, tiling))); // 3 × (B, latent, h, w)
  }

  /** The untiled encoder and quant_conv, on an image already checked: the moments. */
  encodeMoments(image: Tensor, hook: VaeHooks | null): Tensor {
    return chain(
      image,
      // 1. encoder
      (x) => this.encoder.forward(x, hook && ((name, t) => hook(`encoder.${name}`, t))), // (B, 2·latent, h, w)
      // 2. quant_conv
      (h) => observe(hook, 'quant_conv', this.quantConv.forward(h)), // (B, 2·latent, h, w)
    );
  }

  /**
   * latents (B, latent, h, w), already divided by scaling_factor → image (B, out, h·scale,
   * w·scale), raw (unclamped). Tiled automatically when an activation would exceed
   * `maxActivationBytes` (see planDecodeTiling); hooks observe untiled decodes only.
   */
  decode(latents: Tensor, hooks?: VaeHooks): Tensor {
    this.checkLatents('decode', latents);
    const tiling = this.tiling('decode', this.maxActivationBytes, latents.gpu.limits, latents.shape);
    if (!tiling) return this.decodeWhole(latents, hooks ?? null);
    if (hooks) throw new Error(`AutoencoderKL.decode: hooks observe untiled decodes only; latents ${formatShape(latents.shape)} need tiling ${JSON.stringify(tiling)}`);
    return this.decodeTiled(latents, tiling);
  }

  /** decode() over tiles as `tiling` says (see decode-tiling.ts's decodeTiled). */
  decodeTiled(latents: Tensor, tiling: VaeTiling): Tensor {
    this.checkLatents('decodeTiled', latents);
    return decodeTiled(this, latents, tiling);
  }

  /** The untiled decode: post_quant_conv and the decoder, on latents already checked. */
  decodeWhole(latents: Tensor, hook: VaeHooks | null): Tensor {
    return chain(
      latents,
      // 1. post_quant_conv
      (x) => observe(hook, 'post_quant_conv', this.postQuantConv.forward(x)), // (B, latent, h, w)
      // 2. decoder
      (z) => this.decoder.forward(z, hook && ((name, t) => hook(`decoder.${name}`, t))), // (B, out, h·s, w·s)
    );
  }

  /** The split `pass` of latent size `latentShape` needs under `limit` (null: the device's
   *  maxBufferSize), or null for none. */
  private tiling(pass: VaePass, limit: number | null, limits: GPUSupportedLimits, latentShape: readonly number[]): VaeTiling | null {
    return planVaeTiling(pass, this.config, latentShape, this.dtype, limit ?? limits.maxBufferSize, () => AutoencoderKL.create(this.config), limits);
  }

  private checkImage(op: string, image: Tensor): void {
    const [batch = 0, channels, height = 0, width = 0] = image.shape;
    const s = this.scale;
    if (image.shape.length !== 4 || channels !== this.config.inChannels || height % s !== 0 || width % s !== 0 || batch === 0 || height === 0 || width === 0) {
      throw new Error(`AutoencoderKL.${op}: image is ${formatShape(image.shape)}, expected (B, ${this.config.inChannels}, H, W) with H and W positive multiples of ${s}`);
    }
    this.checkDtype(op, 'image', image);
  }

  private checkLatents(op: string, latents: Tensor): void {
    const [batch = 0, channels, h = 0, w = 0] = latents.shape;
    if (latents.shape.length !== 4 || channels !== this.config.latentChannels || batch === 0 || h === 0 || w === 0) {
      throw new Error(`AutoencoderKL.${op}: latents are ${formatShape(latents.shape)}, expected (B, ${this.config.latentChannels}, h, w)`);
    }
    this.checkDtype(op, 'latents', latents);
  }

  private checkDtype(op: string, name: string, t: Tensor): void {
    if (t.dtype !== this.dtype) throw new Error(`AutoencoderKL.${op}: ${name} is ${t.dtype} but the weights are ${this.dtype}`);
  }
}

/** latent_dist.sample() with supplied noise: mean + std · noise (B, latent, h, w), unscaled. */
export function samplePosterior(posterior: DiagonalGaussian, noise: Tensor): Tensor {
  if (formatShape(noise.shape) !== formatShape(posterior.mean.shape)) {
    throw new Error(`samplePosterior: noise ${formatShape(noise.shape)} must match the posterior ${formatShape(posterior.mean.shape)}`);
  }
  return tidy(() => add(posterior.mean, mul(posterior.std, noise))); // (B, latent, h, w)
}
