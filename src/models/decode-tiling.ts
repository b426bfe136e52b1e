// The VAE decode and encode split into passes and tiles when a whole pass would need a buffer
// over a limit. The split is chosen by dry-running the decoder or encoder (on a RecordingGpu,
// shape-only weights) for candidate tilings and keeping the largest that fits, so no formula
// restates their activations; tiled passes blend overlapping tiles as diffusers' tiled_decode
// and tiled_encode do (the encode blends the moments, before the posterior).

import { RecordingGpu, type RecordingLimits, withDefaults } from '../gpu/recording.js';
import { blendInto, cropSpatial, type SpatialWindow } from '../ops/tiles.js';
import { type DType, Tensor, tidy } from '../tensor.js';
import { declareWeights } from './memory-plan.js';
import type { AutoencoderKL, VaeConfig } from './vae.js';

/** A tile's rows or columns of the latent: [start, start + size). */
export interface Span {
  readonly start: number;
  readonly size: number;
}

/** How a decode or encode is split: `images` per pass, each pass over latent tiles of side
 *  ≤ `tile` (an encode: image tiles of side ≤ tile × scale) that overlap their neighbours by
 *  ≥ `overlap` latent pixels (≤ tile / 4). */
export interface VaeTiling {
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

/** e.g. "2×2 tiles of 38×38 latent px (overlaps ≥ 11), 1 image per pass". */
export function describeTiling(tiling: VaeTiling, h: number, w: number): string {
  const rows = tileSpans(h, tiling.tile, tiling.overlap);
  const cols = tileSpans(w, tiling.tile, tiling.overlap);
  return `${rows.length}×${cols.length} tiles of ${rows[0]!.size}×${cols[0]!.size} latent px (overlaps ≥ ${tiling.overlap}), ${tiling.images} image${tiling.images > 1 ? 's' : ''} per pass`;
}

/** Builds a fresh VAE from its config (weights declared, not loaded) for a dry run. */
export type BuildVae = () => AutoencoderKL;

/** The two passes a VAE tiles. */
export type VaePass = 'decode' | 'encode';

/** The largest activation buffer (a pool size class) of untiled decodes or encodes, by dry run. */
export class VaeProbe {
  private readonly gpu: RecordingGpu;
  private readonly vae: AutoencoderKL;

  constructor(private readonly pass: VaePass, build: BuildVae, private readonly dtype: DType, limits: RecordingLimits = {}) {
    // Buffers are measured, not refused: a candidate over the device's maxBufferSize must come
    // out as too large rather than fail. The binding limits stay, so ops window as they will.
    this.gpu = new RecordingGpu({ ...withDefaults(limits), maxBufferSize: Number.MAX_SAFE_INTEGER });
    this.vae = build();
    declareWeights(this.gpu, this.vae.registry, dtype);
  }

  /** Of decoding `images` latents of h × w at once, or encoding `images` images of that latent size. */
  largestBuffer(images: number, h: number, w: number): number {
    const { gpu, vae } = this;
    gpu.trimPool(); // every buffer of this pass is created anew, so each is seen
    gpu.largestBuffer = 0;
    tidy(() => {
      if (this.pass === 'decode') vae.decodeWhole(Tensor.empty(gpu, [images, vae.config.latentChannels, h, w], this.dtype, 'latents'), null);
      else vae.encodeMoments(Tensor.empty(gpu, [images, vae.config.inChannels, h * vae.scale, w * vae.scale], this.dtype, 'image'), null);
    });
    return gpu.largestBuffer;
  }
}

/** The smallest tile side the automatic plan accepts: below it tiles are mostly border. */
const MIN_TILE = 8;

/** Decisions already made, per config object (a pipeline decodes one size again and again). */
const planned = new WeakMap<VaeConfig, Map<string, VaeTiling | null>>();

/**
 * The split a `pass` of latent size `latentShape` (B, C, h, w) needs so that no activation's
 * pool buffer exceeds `limitBytes`, or null when the whole batch fits. Whole images first
 * (exact: GroupNorm statistics are per image), then spatial tiles of one image, as large as fit,
 * with diffusers' overlap of a quarter tile. `limits` are the device's, so the dry runs window
 * their bindings as the device will.
 */
export function planVaeTiling(
  pass: VaePass,
  config: VaeConfig,
  latentShape: readonly number[],
  dtype: DType,
  limitBytes: number,
  build: BuildVae,
  limits: RecordingLimits = {},
): VaeTiling | null {
  const key = `${pass} ${latentShape.join()} ${dtype} ${limitBytes} ${limits.maxStorageBufferBindingSize ?? ''}`;
  const memo = planned.get(config) ?? new Map<string, VaeTiling | null>();
  planned.set(config, memo);
  if (!memo.has(key)) memo.set(key, chooseTiling(pass, latentShape, limitBytes, new VaeProbe(pass, build, dtype, limits)));
  return memo.get(key)!;
}

/** planVaeTiling's choice in words: "untiled" or describeTiling's. */
export function describeVaePass(pass: VaePass, config: VaeConfig, latentShape: readonly number[], dtype: DType, limitBytes: number, build: BuildVae, limits: RecordingLimits = {}): string {
  const tiling = planVaeTiling(pass, config, latentShape, dtype, limitBytes, build, limits);
  return tiling ? describeTiling(tiling, latentShape[2]!, latentShape[3]!) : 'untiled';
}

function chooseTiling(pass: VaePass, latentShape: readonly number[], limitBytes: number, probe: VaeProbe): VaeTiling | null {
  const [batch = 1, , h = 1, w = 1] = latentShape;
  const fits = (images: number, th: number, tw: number): boolean => probe.largestBuffer(images, th, tw) <= limitBytes;
  if (fits(batch, h, w)) return null;
  const side = Math.max(h, w);
  if (fits(1, h, w)) {
    let images = 1;
    while (images < batch && fits(images + 1, h, w)) images++;
    return { images, tile: side, overlap: 0 };
  }
  // The largest buffer grows with the tile: bisect for the largest tile side that fits.
  const tileFits = (tile: number): boolean => fits(1, Math.min(tile, h), Math.min(tile, w));
  if (!tileFits(MIN_TILE)) {
    const need = probe.largestBuffer(1, Math.min(MIN_TILE, h), Math.min(MIN_TILE, w));
    throw new Error(`AutoencoderKL.${pass}: even ${MIN_TILE}×${MIN_TILE} latent tiles need ${need}-byte activations, over the ${limitBytes}-byte limit`);
  }
  let [lo, hi] = [MIN_TILE, side]; // lo fits, side does not
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (tileFits(mid)) lo = mid;
    else hi = mid;
  }
  return { images: 1, tile: lo, overlap: Math.floor(lo / 4) };
}

/**
 * Runs `forward` on each tile of a (batch, ·, h, w) latent grid as `tiling` says (`tiling.images`
 * images per pass, overlapping tiles from tileSpans; the window in latent pixels, or null for the
 * whole input at once) and blends its outputs into `out`, whose pixels are `scale` per latent
 * pixel, with linear ramps across each overlap: diffusers' blend_v / blend_h, with tiles placed
 * evenly so that every overlap is blended and the ramps of neighbours sum to one.
 */
function blendTiles(out: Tensor, latentShape: readonly number[], tiling: VaeTiling, scale: number, forward: (window: SpatialWindow | null) => Tensor): Tensor {
  const [batch, , h, w] = latentShape as [number, number, number, number];
  if (!Number.isInteger(tiling.images) || tiling.images < 1) throw new Error(`VAE tiling: images ${tiling.images} must be a positive integer`);
  const rows = tileSpans(h, tiling.tile, tiling.overlap);
  const cols = tileSpans(w, tiling.tile, tiling.overlap);
  out.fill(0); // tiles are added in with weights that sum to one
  // Ramp widths in output pixels: the overlap with the neighbour on that side.
  const before = (spans: Span[], k: number): number => (k > 0 ? (spans[k - 1]!.start + spans[k - 1]!.size - spans[k]!.start) * scale : 0);
  const after = (spans: Span[], k: number): number => (k < spans.length - 1 ? before(spans, k + 1) : 0);
  for (let image = 0; image < batch; image += tiling.images) {
    const images = Math.min(tiling.images, batch - image);
    rows.forEach((row, i) =>
      cols.forEach((col, j) => {
        const whole = images === batch && rows.length === 1 && cols.length === 1;
        const ramps = { top: before(rows, i), bottom: after(rows, i), left: before(cols, j), right: after(cols, j) };
        tidy(() => {
          const tile = forward(whole ? null : { image, images, y: row.start, x: col.start, h: row.size, w: col.size });
          blendInto(out, tile, { image, y: row.start * scale, x: col.start * scale }, ramps);
        });
      }),
    );
  }
  return out;
}

/**
 * `vae`'s decode over tiles of `latents` as `tiling` says, their images blended (blendTiles). Not
 * equal to an untiled decode when tiles split an image: GroupNorm statistics are per tile.
 */
export function decodeTiled(vae: AutoencoderKL, latents: Tensor, tiling: VaeTiling): Tensor {
  const [batch, , h, w] = latents.shape as [number, number, number, number];
  const s = vae.scale;
  const out = Tensor.empty(latents.gpu, [batch, vae.config.outChannels, h * s, w * s], latents.dtype, 'vae image');
  return blendTiles(out, latents.shape, tiling, s, (win) => vae.decodeWhole(win ? cropSpatial(latents, win) : latents, null)); // (n, out, th·s, tw·s)
}

/**
 * `vae`'s encoder and quant_conv over tiles of `image` (B, in, H, W) as `tiling` says, in latent
 * pixels, their moments (B, 2·latent, H/s, W/s) blended (blendTiles) before the posterior is
 * taken: diffusers' tiled_encode. Not equal to an untiled encode when tiles split an image:
 * GroupNorm statistics (and the mid block's attention) see one tile.
 */
export function encodeTiled(vae: AutoencoderKL, image: Tensor, tiling: VaeTiling): Tensor {
  const [batch, , height, width] = image.shape as [number, number, number, number];
  const s = vae.scale;
  const latentShape = [batch, vae.config.latentChannels, height / s, width / s];
  const out = Tensor.empty(image.gpu, [batch, 2 * vae.config.latentChannels, height / s, width / s], image.dtype, 'vae moments');
  const crop = (win: SpatialWindow): Tensor => cropSpatial(image, { ...win, y: win.y * s, x: win.x * s, h: win.h * s, w: win.w * s });
  return blendTiles(out, latentShape, tiling, 1, (win) => vae.encodeMoments(win ? crop(win) : image, null)); // (n, 2·latent, th, tw)
}
