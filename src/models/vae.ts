// diffusers' AutoencoderKL as SDXL uses it: typed config, weights by checkpoint name, the
// encoder (image → posterior mean / logvar / std) and the decoder (latents / scaling_factor →
// raw image), with a tiled decode for sizes whose activations would not fit a buffer.
// f32 by default (the SDXL VAE overflows in f16: force_upcast); f16 when loaded so.

import { attention } from '../ops/attention.js';
import { add, mul } from '../ops/binary.js';
import { silu } from '../ops/elementwise.js';
import { transpose12 } from '../ops/transpose.js';
import { type DiagonalGaussian, diagonalGaussian } from '../ops/posterior.js';
import { blendInto, cropSpatial } from '../ops/tiles.js';
import { sizeClass } from '../gpu/buffer-pool.js';
import { bytesPerElement, type DType, formatShape, Tensor } from '../tensor.js';
import { Conv2d, GroupNorm, Linear } from './blocks/layers.js';
import { ResnetBlock2D } from './blocks/resnet.js';
import { Downsample2D, Upsample2D } from './blocks/unet-blocks.js';
import type { Built } from './clip.js';
import { ConfigReader } from './config.js';
import { WeightRegistry, WeightScope } from './weights.js';

export type { DiagonalGaussian } from '../ops/posterior.js';

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

/** diffusers hard-codes this eps for every VAE norm (resnets, attention, conv_norm_out). */
const VAE_EPS = 1e-6;

/**
 * Parses vae/config.json: AutoencoderKL with DownEncoderBlock2D / UpDecoderBlock2D levels and
 * SiLU. Other block types, activations, latent normalisation (latents_mean / latents_std /
 * shift_factor) or dropped quant convs are errors naming the key; keys left out mean
 * diffusers' defaults.
 */
export function parseVaeConfig(json: unknown, where = 'vae/config.json'): VaeConfig {
  const c = new ConfigReader(json, where);
  c.oneOf('_class_name', ['AutoencoderKL'], 'AutoencoderKL');
  const blockOutChannels = c.intList('block_out_channels', undefined, [64]);
  const levels = blockOutChannels.length;
  const down = c.oneOfEach('down_block_types', ['DownEncoderBlock2D']);
  const up = c.oneOfEach('up_block_types', ['UpDecoderBlock2D']);
  if (down.length !== levels || up.length !== levels) {
    throw new Error(`${where}: ${levels} block_out_channels but ${down.length} down_block_types and ${up.length} up_block_types`);
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
    scalingFactor: c.positive('scaling_factor', 0.18215),
    forceUpcast: c.bool('force_upcast', true),
    midBlockAddAttention: c.bool('mid_block_add_attention', true),
  };
  blockOutChannels.forEach((channels, i) => {
    if (channels % config.normNumGroups !== 0) throw new Error(`${where}: block_out_channels[${i}] = ${channels} does not split into norm_num_groups = ${config.normNumGroups}`);
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

/** diffusers' Attention as the VAE mid block configures it: GroupNorm in front, one head as
 *  wide as the channels, q/k/v biases, and the input added back; on (B, C, H, W). */
export class VaeAttention {
  private readonly groupNorm: GroupNorm;
  private readonly toQ: Linear;
  private readonly toK: Linear;
  private readonly toV: Linear;
  private readonly toOut: Linear;

  constructor(w: WeightScope, channels: number, groups: number) {
    this.groupNorm = new GroupNorm(w.at('group_norm'), groups, channels, VAE_EPS);
    this.toQ = new Linear(w.at('to_q'), channels, channels);
    this.toK = new Linear(w.at('to_k'), channels, channels);
    this.toV = new Linear(w.at('to_v'), channels, channels);
    this.toOut = new Linear(w.at('to_out', 0), channels, channels);
  }

  /** x (B, C, H, W) → x + attention(group_norm(x)) (B, C, H, W). */
  forward(x: Tensor): Tensor {
    const [batch, channels, height, width] = x.shape as [number, number, number, number];
    // 1. GroupNorm, to tokens
    const n = this.groupNorm.forward(x); // (B, C, H, W)
    const tokens = transpose12(n.reshape([batch, channels, height * width])); // (B, HW, C)
    n.release();
    // 2. single-head self-attention, scale C^-½
    const q = this.toQ.forward(tokens); // (B, HW, C)
    const k = this.toK.forward(tokens); // (B, HW, C)
    const v = this.toV.forward(tokens); // (B, HW, C)
    tokens.release();
    const o = attention(q, k, v, { heads: 1 }); // (B, HW, C)
    q.release();
    k.release();
    v.release();
    const p = this.toOut.forward(o); // (B, HW, C)
    o.release();
    // 3. back to an image, plus the input
    const image = transpose12(p); // (B, C, HW)
    p.release();
    const out = add(image.reshape([batch, channels, height, width]), x); // (B, C, H, W)
    image.release();
    return out;
  }
}

/** Resnet → attention → resnet (no time embedding), at the deepest level. */
export class UNetMidBlock2D {
  private readonly resnets: ResnetBlock2D[];
  private readonly attention: VaeAttention | null;

  constructor(w: WeightScope, channels: number, groups: number, addAttention: boolean) {
    const resnet = { inChannels: channels, outChannels: channels, tembChannels: null, groups, eps: VAE_EPS };
    this.resnets = [0, 1].map((i) => new ResnetBlock2D(w.at('resnets', i), resnet));
    this.attention = addAttention ? new VaeAttention(w.at('attentions', 0), channels, groups) : null;
  }

  /** x (B, C, H, W) → (B, C, H, W). */
  forward(x: Tensor): Tensor {
    const r = this.resnets[0]!.forward(x, null); // (B, C, H, W)
    const a = this.attention ? this.attention.forward(r) : r; // (B, C, H, W)
    if (a !== r) r.release();
    const out = this.resnets[1]!.forward(a, null); // (B, C, H, W)
    a.release();
    return out;
  }
}

/** The resnets of a level in sequence (at least one), each intermediate released; x stays. */
function resnetChain(resnets: readonly ResnetBlock2D[], x: Tensor): Tensor {
  let h = x;
  for (const resnet of resnets) {
    const next = resnet.forward(h, null); // (B, out, H, W)
    if (h !== x) h.release();
    h = next;
  }
  return h;
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
    const h = resnetChain(this.resnets, x); // (B, out, H, W)
    if (!this.downsampler) return h;
    const out = this.downsampler.forward(h); // (B, out, H/2, W/2)
    h.release();
    return out;
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
    const h = resnetChain(this.resnets, x); // (B, out, H, W)
    if (!this.upsampler) return h;
    const out = this.upsampler.forward(h); // (B, out, 2H, 2W)
    h.release();
    return out;
  }
}

/** conv_norm_out → SiLU → conv_out; fused norm+SiLU unless the norm's output is observed. */
function normActConv(norm: GroupNorm, conv: Conv2d, x: Tensor, hook: VaeHooks | null): Tensor {
  let act: Tensor;
  if (hook) {
    const normed = norm.forward(x); // (B, C, H, W)
    hook('conv_norm_out', normed);
    act = silu(normed); // (B, C, H, W)
    normed.release();
  } else {
    act = norm.forward(x, true); // (B, C, H, W)
  }
  const out = conv.forward(act); // (B, out, H, W)
  act.release();
  hook?.('conv_out', out);
  return out;
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
    // 1. conv_in
    let h = this.convIn.forward(x); // (B, C0, H, W)
    hook?.('conv_in', h);
    // 2. down levels, each halving H and W but the last
    this.downBlocks.forEach((block, i) => {
      const next = block.forward(h); // (B, C_i, H/2^(i+1), W/2^(i+1)), the last level (B, C_last, H/s, W/s)
      h.release();
      h = next;
      hook?.(`down_blocks.${i}`, h);
    });
    // 3. mid block
    const mid = this.midBlock.forward(h); // (B, C_last, H/s, W/s)
    h.release();
    hook?.('mid_block', mid);
    // 4. GroupNorm → SiLU → conv_out
    const out = normActConv(this.convNormOut, this.convOut, mid, hook); // (B, 2·latent, H/s, W/s)
    mid.release();
    return out;
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
    // 1. conv_in
    const h0 = this.convIn.forward(z); // (B, C_last, h, w)
    hook?.('conv_in', h0);
    // 2. mid block
    let h = this.midBlock.forward(h0); // (B, C_last, h, w)
    h0.release();
    hook?.('mid_block', h);
    // 3. up levels, each doubling H and W but the last
    this.upBlocks.forEach((block, i) => {
      const next = block.forward(h); // (B, C_(L-1-i), 2^(i+1)·h, 2^(i+1)·w), the last level (B, C0, s·h, s·w)
      h.release();
      h = next;
      hook?.(`up_blocks.${i}`, h);
    });
    // 4. GroupNorm → SiLU → conv_out
    const out = normActConv(this.convNormOut, this.convOut, h, hook); // (B, out, s·h, s·w)
    h.release();
    return out;
  }
}

/** A tile's rows or columns of the latent: [start, start + size). */
export interface Span {
  readonly start: number;
  readonly size: number;
}

/** How a decode is split: `images` per pass, each pass over latent tiles of side ≤ `tile`
 *  that overlap their neighbours by ≥ `overlap` latent pixels (≤ tile / 4). */
export interface DecodeTiling {
  readonly images: number;
  readonly tile: number;
  readonly overlap: number;
}

/**
 * Tiles along one axis of `length` latent pixels: the fewest spans of one size ≤ `tile` that
 * cover it with overlaps ≥ `overlap`, shrunk to that size and spread evenly so the last ends at
 * `length`. With overlap ≤ tile / 4 a span's two overlaps never meet, so the blend ramps of
 * neighbours sum to one everywhere.
 */
export function tileSpans(length: number, tile: number, overlap: number): Span[] {
  if (!Number.isInteger(tile) || tile < 1 || !Number.isInteger(overlap) || overlap < 0 || overlap > tile / 4) {
    throw new Error(`tileSpans: tile ${tile} and overlap ${overlap} must be integers with 0 ≤ overlap ≤ tile / 4`);
  }
  if (length <= tile) return [{ start: 0, size: length }];
  const n = Math.ceil((length - overlap) / (tile - overlap));
  const size = Math.ceil((length + (n - 1) * overlap) / n);
  return Array.from({ length: n }, (_, k) => ({ start: Math.round((k * (length - size)) / (n - 1)), size }));
}

/** Bytes of the decoder's largest single activation for `images` latents of h × w. */
export function largestDecoderActivation(config: VaeConfig, images: number, h: number, w: number, dtype: DType): number {
  const reversed = [...config.blockOutChannels].reverse();
  let channelArea = config.latentChannels;
  reversed.forEach((out, i) => {
    const scale = 2 ** i;
    const input = reversed[Math.max(i - 1, 0)]!;
    channelArea = Math.max(channelArea, Math.max(input, out) * scale * scale); // resnets at this level
    if (i < reversed.length - 1) channelArea = Math.max(channelArea, out * 4 * scale * scale); // upsampled
  });
  return images * h * w * channelArea * bytesPerElement(dtype);
}

/** The smallest tile side the automatic plan accepts: below it tiles are mostly border. */
const MIN_TILE = 8;

/**
 * The split a decode of `latentShape` (B, C, h, w) needs so that no activation's pool buffer
 * exceeds `limitBytes`, or null when the whole batch fits. Whole images first (exact:
 * GroupNorm statistics are per image), then spatial tiles of one image, as large as fit, with
 * diffusers' overlap of a quarter tile.
 */
export function planDecodeTiling(config: VaeConfig, latentShape: readonly number[], dtype: DType, limitBytes: number): DecodeTiling | null {
  const [batch = 1, , h = 1, w = 1] = latentShape;
  const fits = (images: number, th: number, tw: number): boolean => sizeClass(largestDecoderActivation(config, images, th, tw, dtype)) <= limitBytes;
  if (fits(batch, h, w)) return null;
  const side = Math.max(h, w);
  if (fits(1, h, w)) {
    let images = 1;
    while (images < batch && fits(images + 1, h, w)) images++;
    return { images, tile: side, overlap: 0 };
  }
  let tile = side;
  while (tile > MIN_TILE && !fits(1, Math.min(tile, h), Math.min(tile, w))) tile--;
  if (!fits(1, Math.min(tile, h), Math.min(tile, w))) {
    throw new Error(`AutoencoderKL.decode: even ${MIN_TILE}×${MIN_TILE} latent tiles need ${largestDecoderActivation(config, 1, MIN_TILE, MIN_TILE, dtype)}-byte activations, over the ${limitBytes}-byte limit`);
  }
  return { images: 1, tile, overlap: Math.floor(tile / 4) };
}

export class AutoencoderKL {
  readonly registry: WeightRegistry;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  private readonly quantConv: Conv2d;
  private readonly postQuantConv: Conv2d;
  /**
   * Largest single activation buffer an untiled decode may use, in bytes; larger decodes are
   * tiled (planDecodeTiling). null: the device's maxBufferSize, i.e. tile only when a buffer
   * could not be allocated. The storage binding limit does not bound it: every decoder op
   * splits its bindings, and tiles change the image (per-tile GroupNorm statistics), so the
   * exact untiled decode is kept whenever it can run. Lower it to bound decode memory.
   */
  maxActivationBytes: number | null = null;

  constructor(readonly config: VaeConfig, w: WeightScope) {
    this.registry = w.registry;
    this.encoder = new Encoder(w.at('encoder'), config);
    this.decoder = new Decoder(w.at('decoder'), config);
    const latent = config.latentChannels;
    this.quantConv = new Conv2d(w.at('quant_conv'), 2 * latent, 2 * latent, 1);
    this.postQuantConv = new Conv2d(w.at('post_quant_conv'), latent, latent, 1);
  }

  /** Declares the model's weights in a fresh registry; then `await registry.load(gpu, source, dtype)`
   *  (f32 for SDXL's VAE: force_upcast). */
  static create(config: VaeConfig, component = 'vae'): Built<AutoencoderKL> {
    const registry = new WeightRegistry(component);
    return { model: new AutoencoderKL(config, new WeightScope(registry)), registry };
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
   * (B, latent, H/scale, W/scale) each; unscaled (multiply a sample by scaling_factor).
   */
  encode(image: Tensor, hooks?: VaeHooks): DiagonalGaussian {
    const [, channels, height = 0, width = 0] = image.shape;
    const s = this.scale;
    if (image.shape.length !== 4 || channels !== this.config.inChannels || height % s !== 0 || width % s !== 0 || height === 0 || width === 0) {
      throw new Error(`AutoencoderKL.encode: image is ${formatShape(image.shape)}, expected (B, ${this.config.inChannels}, H, W) with H and W positive multiples of ${s}`);
    }
    this.checkDtype('encode', 'image', image);
    const hook = hooks ?? null;
    // 1. encoder → moments
    const h = this.encoder.forward(image, hook && ((name, t) => hook(`encoder.${name}`, t))); // (B, 2·latent, h, w)
    // 2. quant_conv
    const moments = this.quantConv.forward(h); // (B, 2·latent, h, w)
    h.release();
    hook?.('quant_conv', moments);
    // 3. mean, clamped logvar, std
    const posterior = diagonalGaussian(moments); // 3 × (B, latent, h, w)
    moments.release();
    return posterior;
  }

  /**
   * latents (B, latent, h, w), already divided by scaling_factor → image (B, out, h·scale,
   * w·scale), raw (unclamped). Tiled automatically when an activation would exceed
   * `maxActivationBytes` (see planDecodeTiling); hooks observe untiled decodes only.
   */
  decode(latents: Tensor, hooks?: VaeHooks): Tensor {
    this.checkLatents('decode', latents);
    const tiling = planDecodeTiling(this.config, latents.shape, this.dtype, this.maxActivationBytes ?? latents.gpu.limits.maxBufferSize);
    if (!tiling) return this.decodeWhole(latents, hooks ?? null);
    if (hooks) throw new Error(`AutoencoderKL.decode: hooks observe untiled decodes only; latents ${formatShape(latents.shape)} need tiling ${JSON.stringify(tiling)}`);
    return this.decodeTiled(latents, tiling);
  }

  /**
   * decode() over tiles: `tiling.images` images per pass, each pass over overlapping latent
   * tiles (tileSpans) whose decoded images are blended with linear ramps across the overlaps
   * (diffusers' tiled_decode blend, with tiles placed evenly so every overlap is blended). Not
   * equal to an untiled decode when tiles split an image: GroupNorm statistics are per tile.
   */
  decodeTiled(latents: Tensor, tiling: DecodeTiling): Tensor {
    this.checkLatents('decodeTiled', latents);
    const [batch, , h, w] = latents.shape as [number, number, number, number];
    if (!Number.isInteger(tiling.images) || tiling.images < 1) throw new Error(`AutoencoderKL.decodeTiled: images ${tiling.images} must be a positive integer`);
    const rows = tileSpans(h, tiling.tile, tiling.overlap);
    const cols = tileSpans(w, tiling.tile, tiling.overlap);
    const s = this.scale;
    const out = Tensor.empty(latents.gpu, [batch, this.config.outChannels, h * s, w * s], latents.dtype, 'vae image');
    out.fill(0); // tiles are added in with weights that sum to one
    // Ramp widths in image pixels: the overlap with the neighbour on that side.
    const before = (spans: Span[], k: number): number => (k > 0 ? (spans[k - 1]!.start + spans[k - 1]!.size - spans[k]!.start) * s : 0);
    const after = (spans: Span[], k: number): number => (k < spans.length - 1 ? before(spans, k + 1) : 0);
    for (let image = 0; image < batch; image += tiling.images) {
      const images = Math.min(tiling.images, batch - image);
      rows.forEach((row, i) =>
        cols.forEach((col, j) => {
          const whole = images === batch && rows.length === 1 && cols.length === 1;
          const z = whole ? latents : cropSpatial(latents, { image, images, y: row.start, x: col.start, h: row.size, w: col.size }); // (n, latent, th, tw)
          const decoded = this.decodeWhole(z, null); // (n, out, th·s, tw·s)
          if (z !== latents) z.release();
          const ramps = { top: before(rows, i), bottom: after(rows, i), left: before(cols, j), right: after(cols, j) };
          blendInto(out, decoded, { image, y: row.start * s, x: col.start * s }, ramps);
          decoded.release();
        }),
      );
    }
    return out;
  }

  private decodeWhole(latents: Tensor, hook: VaeHooks | null): Tensor {
    // 1. post_quant_conv
    const z = this.postQuantConv.forward(latents); // (B, latent, h, w)
    hook?.('post_quant_conv', z);
    // 2. decoder
    const image = this.decoder.forward(z, hook && ((name, t) => hook(`decoder.${name}`, t))); // (B, out, h·s, w·s)
    z.release();
    return image;
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
  const spread = mul(posterior.std, noise); // (B, latent, h, w)
  const sample = add(posterior.mean, spread); // (B, latent, h, w)
  spread.release();
  return sample;
}
