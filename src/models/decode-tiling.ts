// The VAE decode split into passes and tiles when a whole decode would need a buffer over a
// limit. The split is chosen by dry-running the decoder (on a RecordingGpu, shape-only
// weights) for candidate tilings and keeping the largest that fits, so no formula restates
// the decoder's activations; the tiled decode blends overlapping tiles.

import { RecordingGpu, type RecordingLimits, withDefaults } from '../gpu/recording.js';
import { blendInto, cropSpatial } from '../ops/tiles.js';
import { type DType, Tensor, tidy } from '../tensor.js';
import { declareWeights } from './memory-plan.js';
import type { AutoencoderKL, VaeConfig } from './vae.js';

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

/** e.g. "2×2 tiles of 38×38 latent px (overlaps ≥ 11), 1 image per pass". */
export function describeTiling(tiling: DecodeTiling, h: number, w: number): string {
  const rows = tileSpans(h, tiling.tile, tiling.overlap);
  const cols = tileSpans(w, tiling.tile, tiling.overlap);
  return `${rows.length}×${cols.length} tiles of ${rows[0]!.size}×${cols[0]!.size} latent px (overlaps ≥ ${tiling.overlap}), ${tiling.images} image${tiling.images > 1 ? 's' : ''} per pass`;
}

/** Builds a fresh VAE from its config (weights declared, not loaded) for a dry run. */
export type BuildVae = () => AutoencoderKL;

/** The largest activation buffer (a pool size class) of untiled decodes, by dry run. */
export class DecodeProbe {
  private readonly gpu: RecordingGpu;
  private readonly vae: AutoencoderKL;

  constructor(build: BuildVae, private readonly dtype: DType, limits: RecordingLimits = {}) {
    // Buffers are measured, not refused: a candidate over the device's maxBufferSize must come
    // out as too large rather than fail. The binding limits stay, so ops window as they will.
    this.gpu = new RecordingGpu({ ...withDefaults(limits), maxBufferSize: Number.MAX_SAFE_INTEGER });
    this.vae = build();
    declareWeights(this.gpu, this.vae.registry, dtype);
  }

  /** Of decoding `images` latents of h × w at once. */
  largestBuffer(images: number, h: number, w: number): number {
    const { gpu } = this;
    gpu.trimPool(); // every buffer of this decode is created anew, so each is seen
    gpu.largestBuffer = 0;
    tidy(() => {
      this.vae.decodeWhole(Tensor.empty(gpu, [images, this.vae.config.latentChannels, h, w], this.dtype, 'latents'), null);
    });
    return gpu.largestBuffer;
  }
}

/** The smallest tile side the automatic plan accepts: below it tiles are mostly border. */
const MIN_TILE = 8;

/** Decisions already made, per config object (a pipeline decodes one size again and again). */
const planned = new WeakMap<VaeConfig, Map<string, DecodeTiling | null>>();

/**
 * The split a decode of `latentShape` (B, C, h, w) needs so that no activation's pool buffer
 * exceeds `limitBytes`, or null when the whole batch fits. Whole images first (exact:
 * GroupNorm statistics are per image), then spatial tiles of one image, as large as fit, with
 * diffusers' overlap of a quarter tile. `limits` are the device's, so the dry runs window
 * their bindings as the device will.
 */
export function planDecodeTiling(
  config: VaeConfig,
  latentShape: readonly number[],
  dtype: DType,
  limitBytes: number,
  build: BuildVae,
  limits: RecordingLimits = {},
): DecodeTiling | null {
  const key = `${latentShape.join()} ${dtype} ${limitBytes} ${limits.maxStorageBufferBindingSize ?? ''}`;
  const memo = planned.get(config) ?? new Map<string, DecodeTiling | null>();
  planned.set(config, memo);
  if (!memo.has(key)) memo.set(key, chooseTiling(latentShape, limitBytes, new DecodeProbe(build, dtype, limits)));
  return memo.get(key)!;
}

function chooseTiling(latentShape: readonly number[], limitBytes: number, probe: DecodeProbe): DecodeTiling | null {
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
    throw new Error(`AutoencoderKL.decode: even ${MIN_TILE}×${MIN_TILE} latent tiles need ${need}-byte activations, over the ${limitBytes}-byte limit`);
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
 * `vae`'s decode over tiles: `tiling.images` images per pass, each pass over overlapping latent
 * tiles (tileSpans) whose decoded images are blended with linear ramps across the overlaps
 * (diffusers' tiled_decode blend, with tiles placed evenly so every overlap is blended). Not
 * equal to an untiled decode when tiles split an image: GroupNorm statistics are per tile.
 */
export function decodeTiled(vae: AutoencoderKL, latents: Tensor, tiling: DecodeTiling): Tensor {
  const [batch, , h, w] = latents.shape as [number, number, number, number];
  if (!Number.isInteger(tiling.images) || tiling.images < 1) throw new Error(`AutoencoderKL.decodeTiled: images ${tiling.images} must be a positive integer`);
  const rows = tileSpans(h, tiling.tile, tiling.overlap);
  const cols = tileSpans(w, tiling.tile, tiling.overlap);
  const s = vae.scale;
  const out = Tensor.empty(latents.gpu, [batch, vae.config.outChannels, h * s, w * s], latents.dtype, 'vae image');
  out.fill(0); // tiles are added in with weights that sum to one
  // Ramp widths in image pixels: the overlap with the neighbour on that side.
  const before = (spans: Span[], k: number): number => (k > 0 ? (spans[k - 1]!.start + spans[k - 1]!.size - spans[k]!.start) * s : 0);
  const after = (spans: Span[], k: number): number => (k < spans.length - 1 ? before(spans, k + 1) : 0);
  for (let image = 0; image < batch; image += tiling.images) {
    const images = Math.min(tiling.images, batch - image);
    rows.forEach((row, i) =>
      cols.forEach((col, j) => {
        const whole = images === batch && rows.length === 1 && cols.length === 1;
        const ramps = { top: before(rows, i), bottom: after(rows, i), left: before(cols, j), right: after(cols, j) };
        tidy(() => {
          const z = whole ? latents : cropSpatial(latents, { image, images, y: row.start, x: col.start, h: row.size, w: col.size }); // (n, latent, th, tw)
          blendInto(out, vae.decodeWhole(z, null), { image, y: row.start * s, x: col.start * s }, ramps); // (n, out, th·s, tw·s) blended in
        });
      }),
    );
  }
  return out;
}
