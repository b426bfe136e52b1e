// GPU memory plan of the SDXL pipeline for a config set, image size, batch and dtypes: the
// weight bytes of each network (from its declared weights, built without a GPU) and an
// ESTIMATE of its forward's activation peak. The estimate replays each forward's allocations
// and releases, block by block as the model code makes them (every activation tensor and the
// small per-call ones: time embeddings, group-norm statistics, uploaded ids), through a model
// of the buffer pool (size classes, idle buffers reused per class, never freed). It does not
// run the models, so a change to a forward's allocation order must be mirrored here; the
// tests compare it with the pool peak measured on the tiny fixture.

import { sizeClass } from '../gpu/buffer-pool.js';
import { type DType, numel, storageBytes } from '../tensor.js';
import { type CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig } from './clip.js';
import { parseUNetConfig, TIME_IDS, UNet2DConditionModel, type UNetConfig } from './unet.js';
import { AutoencoderKL, type DecodeTiling, parseVaeConfig, planDecodeTiling, tileSpans, type VaeConfig } from './vae.js';
import type { WeightRegistry } from './weights.js';

/** One live activation in the replay. */
interface Buf {
  readonly size: number;
}

/**
 * The buffer pool as the forward sees it: `alloc` takes an idle buffer of the size class or
 * grows the pool; `free` returns it. `peakHeld` is the pool's peakBytes (live + idle), the GPU
 * memory the activations really take; `peakLive` the least any allocator could need.
 */
export class PoolReplay {
  private readonly idle = new Map<number, number>();
  private live = 0;
  private held = 0;
  peakLive = 0;
  peakHeld = 0;
  /** The largest single buffer: what must fit the device's maxBufferSize. */
  largest = 0;
  /** The largest tensor an op binds whole (concat, transpose12: they cannot split a binding
   *  into windows): what must fit the device's maxStorageBufferBindingSize. */
  largestWhole = 0;

  constructor(readonly dtype: DType) {}

  alloc(shape: readonly number[], dtype: DType = this.dtype, boundWhole = false): Buf {
    if (boundWhole) this.largestWhole = Math.max(this.largestWhole, storageBytes(shape, dtype));
    const size = sizeClass(storageBytes(shape, dtype));
    const free = this.idle.get(size) ?? 0;
    if (free > 0) this.idle.set(size, free - 1);
    else this.held += size;
    this.live += size;
    this.peakLive = Math.max(this.peakLive, this.live);
    this.peakHeld = Math.max(this.peakHeld, this.held);
    this.largest = Math.max(this.largest, size);
    return { size };
  }

  free(...bufs: Buf[]): void {
    for (const b of bufs) {
      this.idle.set(b.size, (this.idle.get(b.size) ?? 0) + 1);
      this.live -= b.size;
    }
  }
}

// ——— the layers' allocations, in each op's order ———

/** groupNorm: the output, then its statistics (released before it returns). */
function groupNorm(p: PoolReplay, shape: readonly number[], groups: number): Buf {
  const [batch = 1, channels = 1, ...spatial] = shape;
  const chunks = Math.ceil(((channels / groups) * numel(spatial)) / 2048);
  const out = p.alloc(shape);
  p.free(p.alloc([batch * groups * chunks * 2], 'f32'));
  return out;
}

/** ResnetBlock2D.forward: x (B, in, H, W) stays → (B, out, H, W). */
function resnet(p: PoolReplay, batch: number, inC: number, outC: number, h: number, w: number, groups: number, tembChannels: number | null): Buf {
  const n1 = groupNorm(p, [batch, inC, h, w], groups);
  let x = p.alloc([batch, outC, h, w]); // conv1
  p.free(n1);
  if (tembChannels !== null) {
    const act = p.alloc([batch, tembChannels]);
    const proj = p.alloc([batch, outC]);
    p.free(act);
    const withTime = p.alloc([batch, outC, h, w]);
    p.free(proj, x);
    x = withTime;
  }
  const n2 = groupNorm(p, [batch, outC, h, w], groups);
  p.free(x);
  const shortcut = inC !== outC ? p.alloc([batch, outC, h, w]) : null;
  const out = p.alloc([batch, outC, h, w]); // conv2 (+ shortcut)
  p.free(n2);
  if (shortcut) p.free(shortcut);
  return out;
}

/** Attention.forward on (B, L, dim) queries and (B, S, ·) keys → (B, L, dim). */
function attention(p: PoolReplay, batch: number, l: number, s: number, dim: number): Buf {
  const qkv = [p.alloc([batch, l, dim]), p.alloc([batch, s, dim]), p.alloc([batch, s, dim])];
  const o = p.alloc([batch, l, dim]);
  p.free(...qkv);
  const out = p.alloc([batch, l, dim]); // to_out (+ residual)
  p.free(o);
  return out;
}

/** Transformer2DModel.forward: x (B, C, H, W) stays → (B, C, H, W). */
function transformer2d(p: PoolReplay, batch: number, c: number, h: number, w: number, layers: number, contextLength: number, groups: number): Buf {
  const l = h * w;
  const n = groupNorm(p, [batch, c, h, w], groups);
  const tokens = p.alloc([batch, l, c], undefined, true); // transpose12
  p.free(n);
  let x = p.alloc([batch, l, c]); // proj_in
  p.free(tokens);
  for (let i = 0; i < layers; i++) {
    // BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward
    const n1 = p.alloc([batch, l, c]);
    const h1 = attention(p, batch, l, l, c);
    p.free(n1);
    const n2 = p.alloc([batch, l, c]);
    const h2 = attention(p, batch, l, contextLength, c);
    p.free(n2, h1);
    const n3 = p.alloc([batch, l, c]);
    const proj = p.alloc([batch, l, 8 * c]);
    const gated = p.alloc([batch, l, 4 * c]);
    p.free(proj);
    const out = p.alloc([batch, l, c]);
    p.free(gated, n3, h2, x);
    x = out;
  }
  const projOut = p.alloc([batch, l, c]);
  p.free(x);
  const image = p.alloc([batch, c, l], undefined, true); // transpose12
  p.free(projOut);
  const out = p.alloc([batch, c, h, w]); // + x
  p.free(image);
  return out;
}

/** Upsample2D: nearest to (h, w), then the conv. */
function upsample(p: PoolReplay, batch: number, c: number, h: number, w: number): Buf {
  const up = p.alloc([batch, c, h, w]);
  const out = p.alloc([batch, c, h, w]);
  p.free(up);
  return out;
}

/** TimestepEmbedding.forward: Linear → SiLU → Linear, the input stays. */
function timestepEmbedding(p: PoolReplay, batch: number, dim: number): Buf {
  const h = p.alloc([batch, dim]);
  const a = p.alloc([batch, dim]);
  p.free(h);
  const out = p.alloc([batch, dim]);
  p.free(a);
  return out;
}

// ——— the networks ———

/** CLIPTextTransformer.forward (penultimate kept, as SDXL runs it), plus text_projection. */
export function clipActivationPeak(config: CLIPTextConfig, batch: number, sequenceLength: number, dtype: DType, projection: boolean): PoolReplay {
  const p = new PoolReplay(dtype);
  const { hiddenSize: c, intermediateSize: inner, numHiddenLayers: n } = config;
  const bl = [batch, sequenceLength];
  // 1. embeddings (ids and positions are uploaded as f32)
  const ids = p.alloc([batch * sequenceLength], 'f32');
  const tokens = p.alloc([batch * sequenceLength, c]);
  p.free(ids);
  const positionIds = p.alloc([sequenceLength], 'f32');
  const position = p.alloc([sequenceLength, c]);
  p.free(positionIds);
  const embeddings = p.alloc([...bl, c]);
  p.free(tokens, position);
  // 2. encoder layers; hidden state n − 1 (the penultimate) is kept
  let hidden = embeddings;
  let penultimate: Buf | null = n === 1 ? embeddings : null;
  for (let i = 0; i < n; i++) {
    const x = p.alloc([...bl, c]);
    const attended = attention(p, batch, sequenceLength, sequenceLength, c);
    p.free(x);
    const y = p.alloc([...bl, c]);
    const h = p.alloc([...bl, inner]);
    const a = p.alloc([...bl, inner]);
    p.free(h);
    const out = p.alloc([...bl, c]);
    p.free(a, y, attended);
    if (hidden !== embeddings && hidden !== penultimate) p.free(hidden);
    hidden = out;
    if (i + 1 === n - 1) penultimate = out;
  }
  if (penultimate !== embeddings) p.free(embeddings);
  // 3. final layer norm, 4. pooled rows (and the projection)
  p.alloc([...bl, c]);
  if (hidden !== penultimate) p.free(hidden);
  const rows = p.alloc([batch], 'f32');
  p.alloc([batch, c]);
  p.free(rows);
  if (projection) p.alloc([batch, config.projectionDim]);
  return p;
}

/** UNet2DConditionModel.forward on (B, 4, h, w) latents with a `contextLength`-token prompt. */
export function unetActivationPeak(config: UNetConfig, batch: number, h: number, w: number, contextLength: number, dtype: DType): PoolReplay {
  const p = new PoolReplay(dtype);
  const { blockOutChannels: channels, normNumGroups: groups, timeEmbedDim: temb } = config;
  const levels = channels.length;
  // 1.–2. time and size embeddings
  const t = p.alloc([batch], 'f32');
  const tProj = p.alloc([batch, channels[0]!]);
  p.free(t);
  const tEmb = timestepEmbedding(p, batch, temb);
  p.free(tProj);
  const ids = p.alloc([batch * TIME_IDS], 'f32');
  const idsProj = p.alloc([batch * TIME_IDS, config.additionTimeEmbedDim]);
  p.free(ids);
  const addIn = p.alloc([batch, config.projectionClassEmbeddingsInputDim]);
  p.free(idsProj);
  const addEmb = timestepEmbedding(p, batch, temb);
  p.free(addIn);
  const emb = p.alloc([batch, temb]);
  p.free(tEmb, addEmb);
  // 3. conv_in, the first skip; 4. down levels: every output state is a skip
  const skips: Array<{ buf: Buf; c: number; h: number; w: number }> = [{ buf: p.alloc([batch, channels[0]!, h, w]), c: channels[0]!, h, w }];
  let [hh, ww] = [h, w];
  let x = skips[0]!.buf;
  config.downBlockTypes.forEach((type, i) => {
    for (let r = 0; r < config.layersPerBlock[i]!; r++) {
      const inC = r === 0 ? channels[Math.max(i - 1, 0)]! : channels[i]!;
      const out = resnet(p, batch, inC, channels[i]!, hh, ww, groups, temb);
      x = out;
      if (type === 'CrossAttnDownBlock2D') {
        x = transformer2d(p, batch, channels[i]!, hh, ww, config.transformerLayersPerBlock[i]!, contextLength, groups);
        p.free(out);
      }
      skips.push({ buf: x, c: channels[i]!, h: hh, w: ww });
    }
    if (i < levels - 1) {
      [hh, ww] = [Math.ceil(hh / 2), Math.ceil(ww / 2)];
      x = p.alloc([batch, channels[i]!, hh, ww]);
      skips.push({ buf: x, c: channels[i]!, h: hh, w: ww });
    }
  });
  // 5. mid block
  const top = channels[levels - 1]!;
  const r0 = resnet(p, batch, top, top, hh, ww, groups, temb);
  const a = transformer2d(p, batch, top, hh, ww, config.transformerLayersPerBlock[levels - 1]!, contextLength, groups);
  p.free(r0);
  x = resnet(p, batch, top, top, hh, ww, groups, temb);
  p.free(a);
  // 6. up levels: concat(hidden, skip) → resnet (→ transformer) per skip, then upsample to the
  //    size of the skip left on top (2× but where the way down rounded an odd side up)
  let xc = top;
  config.upBlockTypes.forEach((type, i) => {
    const level = levels - 1 - i;
    const input = x;
    let hcur = x;
    for (let r = 0; r < config.layersPerBlock[level]! + 1; r++) {
      const skip = skips.pop()!;
      const joined = p.alloc([batch, xc + skip.c, hh, ww], undefined, true); // concat
      p.free(skip.buf);
      const out = resnet(p, batch, xc + skip.c, channels[level]!, hh, ww, groups, temb);
      p.free(joined);
      if (hcur !== input) p.free(hcur);
      hcur = out;
      if (type === 'CrossAttnUpBlock2D') {
        hcur = transformer2d(p, batch, channels[level]!, hh, ww, config.transformerLayersPerBlock[level]!, contextLength, groups);
        p.free(out);
      }
      xc = channels[level]!;
    }
    if (i < levels - 1) {
      const below = skips[skips.length - 1]!;
      [hh, ww] = [below.h, below.w];
      const up = upsample(p, batch, xc, hh, ww);
      p.free(hcur);
      hcur = up;
    }
    p.free(input);
    x = hcur;
  });
  p.free(emb);
  // 7. GroupNorm → SiLU → conv_out
  const normed = groupNorm(p, [batch, xc, hh, ww], groups);
  p.free(x);
  const act = p.alloc([batch, xc, hh, ww]);
  p.free(normed);
  p.alloc([batch, config.outChannels, hh, ww]);
  p.free(act);
  return p;
}

/** UNetMidBlock2D of the VAE: resnet, attention (GroupNorm, tokens, one head, back, + x), resnet. */
function vaeMidBlock(p: PoolReplay, config: VaeConfig, batch: number, c: number, h: number, w: number): Buf {
  const groups = config.normNumGroups;
  const r = resnet(p, batch, c, c, h, w, groups, null);
  let a = r;
  if (config.midBlockAddAttention) {
    const n = groupNorm(p, [batch, c, h, w], groups);
    const tokens = p.alloc([batch, h * w, c], undefined, true); // transpose12
    p.free(n);
    const qkv = [p.alloc([batch, h * w, c]), p.alloc([batch, h * w, c]), p.alloc([batch, h * w, c])];
    p.free(tokens);
    const o = p.alloc([batch, h * w, c]);
    p.free(...qkv);
    const proj = p.alloc([batch, h * w, c]);
    p.free(o);
    const image = p.alloc([batch, c, h * w], undefined, true); // transpose12
    p.free(proj);
    a = p.alloc([batch, c, h, w]);
    p.free(image, r);
  }
  const out = resnet(p, batch, c, c, h, w, groups, null);
  p.free(a);
  return out;
}

/** Resnets of one VAE level in sequence; the input stays. */
function vaeResnets(p: PoolReplay, config: VaeConfig, batch: number, inC: number, outC: number, layers: number, h: number, w: number): Buf {
  let x: Buf | null = null;
  for (let r = 0; r < layers; r++) {
    const out = resnet(p, batch, r === 0 ? inC : outC, outC, h, w, config.normNumGroups, null);
    if (x) p.free(x);
    x = out;
  }
  return x!;
}

/** Fused GroupNorm+SiLU, then conv_out; the input stays. */
function normActConv(p: PoolReplay, groups: number, shape: readonly number[], outChannels: number): Buf {
  const act = groupNorm(p, shape, groups);
  const out = p.alloc([shape[0]!, outChannels, ...shape.slice(2)]);
  p.free(act);
  return out;
}

/** AutoencoderKL's untiled decode (post_quant_conv and the decoder) of (B, latent, h, w). */
function vaeDecodeWhole(p: PoolReplay, config: VaeConfig, batch: number, h: number, w: number): Buf {
  const reversed = [...config.blockOutChannels].reverse();
  const z = p.alloc([batch, config.latentChannels, h, w]);
  const h0 = p.alloc([batch, reversed[0]!, h, w]);
  let x = vaeMidBlock(p, config, batch, reversed[0]!, h, w);
  p.free(h0);
  let [hh, ww] = [h, w];
  reversed.forEach((out, i) => {
    let y = vaeResnets(p, config, batch, reversed[Math.max(i - 1, 0)]!, out, config.layersPerBlock + 1, hh, ww);
    if (i < reversed.length - 1) {
      [hh, ww] = [2 * hh, 2 * ww];
      const up = upsample(p, batch, out, hh, ww);
      p.free(y);
      y = up;
    }
    p.free(x);
    x = y;
  });
  const image = normActConv(p, config.normNumGroups, [batch, reversed[reversed.length - 1]!, hh, ww], config.outChannels);
  p.free(x, z);
  return image;
}

/** AutoencoderKL.decode of (B, latent, h, w), tiled as `tiling` says (null: untiled). */
export function vaeDecodeActivationPeak(config: VaeConfig, batch: number, h: number, w: number, dtype: DType, tiling: DecodeTiling | null): PoolReplay {
  const p = new PoolReplay(dtype);
  if (!tiling) {
    vaeDecodeWhole(p, config, batch, h, w);
    return p;
  }
  const s = 2 ** (config.blockOutChannels.length - 1);
  p.alloc([batch, config.outChannels, h * s, w * s]);
  for (let image = 0; image < batch; image += tiling.images) {
    const images = Math.min(tiling.images, batch - image);
    for (const row of tileSpans(h, tiling.tile, tiling.overlap)) {
      for (const col of tileSpans(w, tiling.tile, tiling.overlap)) {
        const crop = p.alloc([images, config.latentChannels, row.size, col.size]);
        const decoded = vaeDecodeWhole(p, config, images, row.size, col.size);
        p.free(crop, decoded);
      }
    }
  }
  return p;
}

/** AutoencoderKL.encode of (B, in, H, W): the encoder, quant_conv and the posterior. */
export function vaeEncodeActivationPeak(config: VaeConfig, batch: number, height: number, width: number, dtype: DType): PoolReplay {
  const p = new PoolReplay(dtype);
  const channels = config.blockOutChannels;
  let [hh, ww] = [height, width];
  let x = p.alloc([batch, channels[0]!, hh, ww]); // conv_in
  channels.forEach((out, i) => {
    let y = vaeResnets(p, config, batch, channels[Math.max(i - 1, 0)]!, out, config.layersPerBlock, hh, ww);
    if (i < channels.length - 1) {
      [hh, ww] = [Math.floor(hh / 2), Math.floor(ww / 2)];
      const down = p.alloc([batch, out, hh, ww]);
      p.free(y);
      y = down;
    }
    p.free(x);
    x = y;
  });
  const top = channels[channels.length - 1]!;
  const mid = vaeMidBlock(p, config, batch, top, hh, ww);
  p.free(x);
  const h = normActConv(p, config.normNumGroups, [batch, top, hh, ww], 2 * config.latentChannels);
  p.free(mid);
  const moments = p.alloc([batch, 2 * config.latentChannels, hh, ww]);
  p.free(h);
  for (let i = 0; i < 3; i++) p.alloc([batch, config.latentChannels, hh, ww]);
  p.free(moments);
  return p;
}

// ——— the plan ———

/** The raw config.json of each component (e.g. from a model folder or sdxl-turbo-layout). */
export interface PipelineConfigs {
  readonly textEncoder: unknown;
  readonly textEncoder2: unknown;
  readonly unet: unknown;
  readonly vae: unknown;
}

export interface MemoryPlanOptions {
  readonly width: number;
  readonly height: number;
  readonly batch: number;
  /** Storage dtype of the text encoders and the UNet. */
  readonly dtype: DType;
  /** The VAE's (f32 for SDXL: force_upcast). */
  readonly vaeDtype: DType;
  /** AutoencoderKL.maxActivationBytes for the decode (default: no limit, i.e. untiled). */
  readonly vaeMaxActivationBytes?: number;
}

export interface NetworkMemory {
  readonly network: string;
  /** GPU bytes of the weights; null where another row holds the same weights. */
  readonly weightBytes: number | null;
  /** Estimated activation peak of one forward: the buffer pool's bytes (live + idle). */
  readonly activationBytes: number;
  /** Least possible activation peak: the largest set of simultaneously live tensors. */
  readonly liveBytes: number;
  /** The largest single activation buffer (a pool size class). */
  readonly largestBytes: number;
  /** The largest tensor an op binds whole (concat, transpose12). */
  readonly largestWholeBytes: number;
  readonly note: string;
}

/** Bytes the registry's weights take in `dtype`, as allocated (16-byte multiples). */
export function weightBytes(registry: WeightRegistry, dtype: DType): number {
  let total = 0;
  for (const shape of registry.expected().values()) total += Math.max(16, Math.ceil(storageBytes(shape, dtype) / 16) * 16);
  return total;
}

/** Weights and activation estimates of every network for one generation. */
export function planMemory(configs: PipelineConfigs, options: MemoryPlanOptions): NetworkMemory[] {
  const { width, height, batch, dtype, vaeDtype } = options;
  const te1 = parseCLIPTextConfig(configs.textEncoder, 'text_encoder/config.json');
  const te2 = parseCLIPTextConfig(configs.textEncoder2, 'text_encoder_2/config.json');
  const unet = parseUNetConfig(configs.unet, 'unet/config.json');
  const vae = parseVaeConfig(configs.vae, 'vae/config.json');
  const vaeModel = AutoencoderKL.create(vae);
  const s = vaeModel.scale;
  if (width % s !== 0 || height % s !== 0) throw new Error(`planMemory: ${width}×${height} is not a multiple of ${s}`);
  const [h, w] = [height / s, width / s];
  const tokens = te1.maxPositionEmbeddings;
  const tiling = planDecodeTiling(vae, [batch, vae.latentChannels, h, w], vaeDtype, options.vaeMaxActivationBytes ?? Infinity);
  const row = (network: string, weights: number | null, p: PoolReplay, note: string): NetworkMemory => ({
    network,
    weightBytes: weights,
    activationBytes: p.peakHeld,
    liveBytes: p.peakLive,
    largestBytes: p.largest,
    largestWholeBytes: p.largestWhole,
    note,
  });
  return [
    row('text_encoder', weightBytes(CLIPTextModel.create(te1).registry, dtype), clipActivationPeak(te1, batch, tokens, dtype, false), dtype),
    row('text_encoder_2', weightBytes(CLIPTextModelWithProjection.create(te2).registry, dtype), clipActivationPeak(te2, batch, tokens, dtype, true), dtype),
    row('unet', weightBytes(UNet2DConditionModel.create(unet).registry, dtype), unetActivationPeak(unet, batch, h, w, tokens, dtype), dtype),
    row(
      'vae decode',
      weightBytes(vaeModel.registry, vaeDtype),
      vaeDecodeActivationPeak(vae, batch, h, w, vaeDtype, tiling),
      `${vaeDtype}, ${tiling ? describeTiling(tiling, h, w) : 'untiled'}`,
    ),
    row('vae encode', null, vaeEncodeActivationPeak(vae, batch, height, width, vaeDtype), `${vaeDtype}, image-to-image only`),
  ];
}

/** e.g. "2×2 tiles of 38×38 latent px (overlaps ≥ 11), 1 image per pass". */
function describeTiling(tiling: DecodeTiling, h: number, w: number): string {
  const rows = tileSpans(h, tiling.tile, tiling.overlap);
  const cols = tileSpans(w, tiling.tile, tiling.overlap);
  return `${rows.length}×${cols.length} tiles of ${rows[0]!.size}×${cols[0]!.size} latent px (overlaps ≥ ${tiling.overlap}), ${tiling.images} image${tiling.images > 1 ? 's' : ''} per pass`;
}

const MB = 1e6;

/** A small text table: network, weights MB, activations MB (pool estimate and live minimum). */
export function formatMemoryPlan(plan: readonly NetworkMemory[], options: MemoryPlanOptions): string {
  const lines = [
    `GPU memory plan: ${options.width}×${options.height}, batch ${options.batch} (activations are estimates)`,
    `${'network'.padEnd(16)}${'weights MB'.padStart(12)}${'activations MB'.padStart(16)}${'(live MB)'.padStart(11)}  notes`,
  ];
  for (const r of plan) {
    const weights = r.weightBytes === null ? '(shared)' : (r.weightBytes / MB).toFixed(1);
    lines.push(`${r.network.padEnd(16)}${weights.padStart(12)}${(r.activationBytes / MB).toFixed(1).padStart(16)}${(r.liveBytes / MB).toFixed(1).padStart(11)}  ${r.note}`);
  }
  // One pool serves every network: its buffers outlive each forward unless trimmed, so the
  // pipeline holds between the largest peak and the sum of the peaks.
  const weights = plan.reduce((sum, r) => sum + (r.weightBytes ?? 0), 0);
  const largest = Math.max(...plan.map((r) => r.activationBytes));
  const all = plan.reduce((sum, r) => sum + r.activationBytes, 0);
  lines.push(`${'all weights'.padEnd(16)}${(weights / MB).toFixed(1).padStart(12)}  + activations ${(largest / MB).toFixed(1)}–${(all / MB).toFixed(1)} MB (largest peak – sum of peaks) = ${((weights + largest) / MB).toFixed(1)}–${((weights + all) / MB).toFixed(1)} MB`);
  return lines.join('\n');
}
