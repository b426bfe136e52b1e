// Options of the library API (shared by the CLI), checked once at the boundary so a bad
// value is reported by name before any GPU work starts.

import { usage } from '../errors.js';

export type ComputeDType = 'f16' | 'f32';
export type WeightVariant = 'fp16' | 'fp32';

/** An 8-bit RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

export type Stage = 'load' | 'encode-prompt' | 'encode-image' | 'denoise' | 'decode';

export interface ProgressEvent {
  readonly stage: Stage;
  /** Units done in this stage (weights tensors, denoising steps, …) and the stage's total. */
  readonly done: number;
  readonly total: number;
}

export interface PipelineOptions {
  /** Which weight files to read (default: fp16 where the folder has them). */
  readonly variant?: WeightVariant;
  /** Compute precision of the text encoders and UNet (default f16 where the adapter has
   *  shader-f16). The VAE runs in f32 (the SDXL VAE overflows in f16). */
  readonly dtype?: ComputeDType;
  /** Free the text encoders' GPU memory after each prompt encoding (re-loaded on demand). */
  readonly releaseEncoders?: boolean;
  /** Per-kernel GPU timings (timestamp-query). */
  readonly profile?: boolean;
  readonly onProgress?: (event: ProgressEvent) => void;
}

export interface GenerateOptions {
  /** One prompt, or several (one batch row each). The empty prompt is allowed. */
  readonly prompt: string | readonly string[];
  /** Denoising steps (SDXL-Turbo: 1–4; default 1). */
  readonly steps?: number;
  /** Seed of the torch-compatible CPU generator (default: random). */
  readonly seed?: number;
  readonly width?: number;
  readonly height?: number;
  readonly imagesPerPrompt?: number;
  /** Parity: supplies every random tensor by name instead of drawing it from the seed
   *  (initial_latents, step{i}.noise, posterior_noise, add_noise_noise). */
  readonly inputs?: ReadonlyMap<string, Float32Array>;
  /** Also return final latents, float image and prompt embeddings. */
  readonly returnTensors?: boolean;
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: ProgressEvent) => void;
}

export interface ImageToImageOptions extends GenerateOptions {
  readonly image: RgbImage;
  /** How much of the schedule to run, in (0, 1] (default 0.5). */
  readonly strength?: number;
}

export interface ResolvedGenerate {
  readonly prompts: string[];
  readonly steps: number;
  readonly seed: number;
  readonly width: number;
  readonly height: number;
  readonly imagesPerPrompt: number;
}

export const DEFAULT_SIZE = 512;
/** Latent downsampling of the SDXL VAE (3 downsamples). */
export const VAE_SCALE = 8;

// The largest values accepted (far beyond SDXL-Turbo's 1–4 steps at 512²); whether a size fits
// the device is checked against its limits separately (pipeline/preflight.ts).
export const MAX_STEPS = 1000;
export const MAX_SIZE = 16384;
export const MAX_IMAGES_PER_PROMPT = 64;

export function checkInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    usage(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return value;
}

/** An image side: a multiple of 8 (the VAE's scale) in [8, MAX_SIZE]. */
export function checkSize(name: string, value: unknown): number {
  const v = checkInteger(name, value, VAE_SCALE, MAX_SIZE);
  if (v % VAE_SCALE !== 0) usage(`${name} must be a multiple of ${VAE_SCALE}, got ${v}`);
  return v;
}

export function resolveGenerate(o: GenerateOptions, defaultSize: { width: number; height: number }): ResolvedGenerate {
  const prompts = typeof o.prompt === 'string' ? [o.prompt] : Array.isArray(o.prompt) ? [...o.prompt] : null;
  if (!prompts || prompts.length === 0 || prompts.some((p) => typeof p !== 'string')) {
    usage(`prompt must be a string or a non-empty array of strings, got ${JSON.stringify(o.prompt)}`);
  }
  return {
    prompts,
    steps: checkInteger('steps', o.steps ?? 1, 1, MAX_STEPS),
    seed: o.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : checkInteger('seed', o.seed, 0),
    width: checkSize('width', o.width ?? defaultSize.width),
    height: checkSize('height', o.height ?? defaultSize.height),
    imagesPerPrompt: checkInteger('imagesPerPrompt', o.imagesPerPrompt ?? 1, 1, MAX_IMAGES_PER_PROMPT),
  };
}

export function checkStrength(strength: unknown, name = 'strength'): number {
  if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) {
    usage(`${name} must be in (0, 1], got ${JSON.stringify(strength)}`);
  }
  return strength;
}

/** The denoising steps image-to-image runs: the last min(⌊steps·strength⌋, steps) of the
 *  schedule (diffusers' get_timesteps, as the scheduler's img2imgSchedule keeps them), at least 1. */
export function img2imgSteps(steps: number, strength: number): number {
  const kept = Math.min(Math.floor(steps * strength), steps);
  if (kept < 1) usage(`steps ${steps} × strength ${strength} = ${steps * strength} < 1 leaves no denoising step; raise steps or strength`);
  return kept;
}

export function checkImage(image: RgbImage | undefined): RgbImage {
  if (!image || !(image.data instanceof Uint8Array) || image.data.length !== image.width * image.height * 3) {
    usage('image must be an RGB image { width, height, data: Uint8Array of width·height·3 bytes }');
  }
  return image;
}

/** Image-to-image's size when none is given: the image's, rounded down to a multiple of 8 as
 *  diffusers' image processor rounds it. */
export function imageDefaultSize(image: RgbImage): { width: number; height: number } {
  const size = { width: image.width - (image.width % VAE_SCALE), height: image.height - (image.height % VAE_SCALE) };
  if (size.width < VAE_SCALE || size.height < VAE_SCALE) usage(`input image ${image.width}×${image.height} is smaller than ${VAE_SCALE}×${VAE_SCALE}`);
  return size;
}
