// 8-bit RGB images, the conversions diffusers' VaeImageProcessor applies around the VAE, and
// the images a generation returns (RGB, RGBA for a canvas, PNG with the parameters).

import { encodePng } from './io/png-encode.js';

export interface RgbImage {
  readonly width: number;
  readonly height: number;
  /** Row-major HWC, 3 bytes per pixel. */
  readonly data: Uint8Array;
}

/** RGBA pixels, alpha 255: what ImageData holds (`new ImageData(p.data, p.width, p.height)`). */
export interface RgbaImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8ClampedArray;
}

/** The largest input image, width × height, checked from a file's header before decoding where
 *  the decoder allows (far above SDXL's sizes; refuses a header that would make a decoder
 *  allocate gigabytes). */
export const MAX_IMAGE_PIXELS = 8192 * 8192;
/** The largest input image file: above any PNG of MAX_IMAGE_PIXELS (8192² RGB, uncompressed,
 *  is 192 MiB). */
export const MAX_IMAGE_BYTES = 256 * 2 ** 20;

/** RGBA pixels (a decoder's, a canvas's) as RGB: alpha dropped, not composited, as PIL's
 *  convert('RGB') does. */
export function rgbaToRgb(width: number, height: number, rgba: Uint8Array | Uint8ClampedArray): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; q < data.length; p += 4, q += 3) data.set(rgba.subarray(p, p + 3), q);
  return { width, height, data };
}

/** What made an image: written into its PNG. */
export interface GenerationParameters {
  readonly prompt: string;
  readonly seed: number | bigint;
  /** Steps of the schedule (image-to-image runs ⌊steps·strength⌋ of them). */
  readonly steps: number;
  /** Image-to-image only. */
  readonly strength?: number;
  /** Classifier-free guidance scale (default 0: off), and the negative prompt when guided. */
  readonly guidanceScale?: number;
  readonly negativePrompt?: string;
  /** Default 'euler-a'. */
  readonly scheduler?: 'euler' | 'euler-a';
  readonly width: number;
  readonly height: number;
  /** The model source as given to loadPipeline (a repo id, URL or folder). */
  readonly model: string;
  /** The image's row in its batch (from 0), and the batch's size: one seed draws the batch. */
  readonly batchIndex: number;
  readonly batchSize: number;
}

/** One generated image: 8-bit RGB pixels (a valid imageToImage input), RGBA, and a PNG. */
export class GeneratedImage<Png = Uint8Array> implements RgbImage {
  constructor(
    readonly width: number,
    readonly height: number,
    /** Row-major HWC, 3 bytes per pixel. */
    readonly data: Uint8Array,
    readonly parameters: GenerationParameters,
    /** Node: the bytes as they are; browser: a Blob. */
    private readonly wrapPng: (bytes: Uint8Array) => Png,
  ) {}

  /** The pixels as RGBA (alpha 255), ImageData-compatible. */
  rgba(): RgbaImage {
    const data = new Uint8ClampedArray(this.width * this.height * 4);
    for (let p = 0, q = 0; q < this.data.length; p += 4, q += 3) {
      data.set(this.data.subarray(q, q + 3), p);
      data[p + 3] = 255;
    }
    return { width: this.width, height: this.height, data };
  }

  /**
   * The image as a PNG file (Node: Uint8Array; browser: Blob), with the generation parameters in
   * text chunks unless `metadata` is false: `parameters` as AUTOMATIC1111 writes it, and
   * prompt, seed, steps, strength, width, height, model, software one by one.
   */
  async png(options: { readonly metadata?: boolean } = {}): Promise<Png> {
    return this.wrapPng(await encodePng(this, options.metadata === false ? {} : pngText(this.parameters)));
  }
}

/** The PNG text chunks of an image's parameters. */
export function pngText(p: GenerationParameters): Record<string, string> {
  const a1111 = [
    `Steps: ${p.steps}`,
    `Sampler: ${p.scheduler === 'euler' ? 'Euler' : 'Euler a'}`,
    `CFG scale: ${p.guidanceScale ?? 0}`,
    `Seed: ${p.seed}`,
    `Size: ${p.width}x${p.height}`,
    `Model: ${p.model}`,
    ...(p.strength === undefined ? [] : [`Denoising strength: ${p.strength}`]),
    ...(p.batchSize > 1 ? [`Batch size: ${p.batchSize}`, `Batch pos: ${p.batchIndex}`] : []),
  ];
  return {
    parameters: `${p.prompt}\n${p.negativePrompt === undefined ? '' : `Negative prompt: ${p.negativePrompt}\n`}${a1111.join(', ')}`,
    prompt: p.prompt,
    ...(p.negativePrompt === undefined ? {} : { negative_prompt: p.negativePrompt }),
    seed: String(p.seed),
    steps: String(p.steps),
    ...(p.strength === undefined ? {} : { strength: String(p.strength) }),
    ...(p.guidanceScale === undefined ? {} : { guidance_scale: String(p.guidanceScale) }),
    ...(p.scheduler === undefined ? {} : { scheduler: p.scheduler }),
    width: String(p.width),
    height: String(p.height),
    model: p.model,
    software: 'sdxl-turbo-webgpu',
  };
}

/** VaeImageProcessor.preprocess after resizing: uint8/255·2 − 1, as (3, H, W) float32. */
export function imageToTensorData(image: RgbImage): Float32Array {
  const { width: w, height: h, data } = image;
  const out = new Float32Array(3 * h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) out[c * h * w + y * w + x] = Math.fround(Math.fround(data[(y * w + x) * 3 + c]! / 255) * 2) - 1;
    }
  }
  return out;
}

/**
 * VaeImageProcessor.postprocess: decoder output (B, 3, H, W) → clamp(x/2 + 0.5, 0, 1)
 * (returned, the float image) and 8-bit images round(255·x) with NumPy's half-to-even.
 */
export function tensorDataToImages(decoded: Float32Array, batch: number, height: number, width: number): { float: Float32Array; images: RgbImage[] } {
  const plane = height * width;
  const float = new Float32Array(decoded.length);
  for (let i = 0; i < decoded.length; i++) float[i] = Math.min(1, Math.max(0, Math.fround(Math.fround(decoded[i]! / 2) + 0.5)));
  const images: RgbImage[] = [];
  for (let b = 0; b < batch; b++) {
    const data = new Uint8Array(plane * 3);
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) data[p * 3 + c] = roundHalfEven(Math.fround(float[(b * 3 + c) * plane + p]! * 255));
    }
    images.push({ width, height, data });
  }
  return { float, images };
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Resizes with a Lanczos-3 filter, widened when shrinking (as PIL's Image.resize(LANCZOS),
 * which diffusers uses; PIL's fixed-point rounding is not reproduced, so results can differ
 * from it by a level here and there). Separable: rows, then columns — in strips of output
 * columns, so the float intermediate is a strip's width × the input's height (a few MB), never
 * a float copy of a whole 67 M-pixel input.
 */
export function resizeLanczos(image: RgbImage, width: number, height: number): RgbImage {
  if (image.width === width && image.height === height) return image;
  const { width: w, height: h, data } = image;
  const columns = taps(w, width);
  const rows = taps(h, height);
  const out = new Uint8Array(width * height * 3);
  const STRIP = 64;
  const strip = new Float32Array(Math.min(STRIP, width) * h * 3);
  for (let x0 = 0; x0 < width; x0 += STRIP) {
    const n = Math.min(STRIP, width - x0);
    // Rows: the strip's output columns from every input row.
    for (let y = 0; y < h; y++) {
      for (let i = 0; i < n; i++) {
        const { lo, weights, sum } = columns[x0 + i]!;
        for (let c = 0; c < 3; c++) {
          let acc = 0;
          for (let k = 0; k < weights.length; k++) acc += data[(y * w + lo + k) * 3 + c]! * weights[k]!;
          strip[(y * n + i) * 3 + c] = acc / sum;
        }
      }
    }
    // Columns: each output row of the strip.
    for (let j = 0; j < height; j++) {
      const { lo, weights, sum } = rows[j]!;
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < 3; c++) {
          let acc = 0;
          for (let k = 0; k < weights.length; k++) acc += strip[((lo + k) * n + i) * 3 + c]! * weights[k]!;
          out[(j * width + x0 + i) * 3 + c] = Math.min(255, Math.max(0, Math.round(Math.fround(acc / sum))));
        }
      }
    }
  }
  return { width, height, data: out };
}

function lanczos3(x: number): number {
  if (x === 0) return 1;
  if (x <= -3 || x >= 3) return 0;
  const px = Math.PI * x;
  return (3 * Math.sin(px) * Math.sin(px / 3)) / (px * px);
}

/** For each of `to` output samples along an axis of `from`: the first input sample it reads,
 *  the filter's weights from there, and their sum. */
function taps(from: number, to: number): Array<{ lo: number; weights: number[]; sum: number }> {
  const scale = from / to;
  const support = 3 * Math.max(1, scale);
  const filterScale = Math.max(1, scale);
  return Array.from({ length: to }, (_, i) => {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support));
    const hi = Math.min(from, Math.ceil(center + support));
    const weights: number[] = [];
    let sum = 0;
    for (let j = lo; j < hi; j++) {
      const wt = lanczos3((j + 0.5 - center) / filterScale);
      weights.push(wt);
      sum += wt;
    }
    return { lo, weights, sum };
  });
}
