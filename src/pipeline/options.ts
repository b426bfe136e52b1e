// Options of the library API (shared by the CLI), checked once at the boundary so a bad
// value is reported by its option name before any GPU work starts. The defaults live here
// only: generate(), imageToImage(), loadPipeline's preflight and the CLI resolve through
// resolveGenerate.

import { usage } from '../errors.js';
import type { RgbImage } from '../image.js';
import type { ModelComponent, ModelFs } from '../io/model-folder.js';
import type { LoraOption } from '../models/lora.js';
import { SCHEDULERS, type SchedulerName, type SchedulerOverrides, type TimestepSpacing, TIMESTEP_SPACINGS } from './scheduler.js';

export type { RgbImage } from '../image.js';

export type ComputeDType = 'f16' | 'f32';
export type WeightVariant = 'fp16' | 'fp32';
/** How the Linear and conv weights of the UNet and text encoders are stored: 'q8', 8-bit
 *  (docs/Q8.md); 'float', in the compute dtype. */
export type WeightFormat = 'q8' | 'float';

/** Where a VAE comes from: a path or URL (of a folder or a file), a Blob of a file, a folder. */
export type VaeSource = string | Blob | ModelFs;

export type Stage = 'download' | 'load' | 'compile' | 'encode-prompt' | 'encode-image' | 'denoise' | 'decode';

/**
 * One stream of progress for loading and generating. `done` of `total`:
 * - download: bytes of every file this load downloads (Node: into the Hugging Face cache;
 *   browser: into Cache Storage), `file` the one in flight;
 * - load: bytes of weights read, of all four networks together, `component` the one loading;
 * - compile: pipelines compiled (createComputePipelineAsync, in parallel, after the weights) of
 *   those the preflight run (default 512², one step, the model's dtype) dispatches;
 * - denoise: steps; encode-prompt, encode-image, decode: 0 then 1.
 */
export type ProgressEvent =
  | { readonly stage: 'download'; readonly file: string; readonly done: number; readonly total: number }
  | { readonly stage: 'load'; readonly component: ModelComponent; readonly done: number; readonly total: number }
  | { readonly stage: 'compile' | 'encode-prompt' | 'encode-image' | 'denoise' | 'decode'; readonly done: number; readonly total: number };

export interface PipelineOptions {
  /** Which weight files to read (default: fp16 where the folder has them). */
  readonly variant?: WeightVariant;
  /** Compute precision of the text encoders and UNet (default f16 where the adapter has
   *  shader-f16). The VAE runs in f32 (the SDXL VAE overflows in f16). */
  readonly dtype?: ComputeDType;
  /** 'q8': the Linear and conv weights of the UNet and text encoders stored 8-bit, quantized on
   *  the GPU at load (docs/Q8.md). Default: as the files hold them (a `sdxl-turbo quantize`
   *  folder loads 8-bit either way). */
  readonly weights?: 'q8';
  /** LoRAs merged into the UNet and text encoders at load, in order (see setLoras()). */
  readonly loras?: ReadonlyArray<LoraOption>;
  /** Free the text encoders' GPU memory after each prompt encoding (re-loaded on demand). */
  readonly releaseEncoders?: boolean;
  /** Run the load's named run (loadPipeline's `preflight`) once at load, result dropped, so the
   *  first generation costs what later ones do (the pool grown, the step recorded for replay):
   *  for servers and interactive pages. Default false: a one-shot run would do its work twice. */
  readonly warmUp?: boolean;
  /** GPU memory budget in bytes: the planner keeps networks resident, releases the text
   *  encoders (and the UNet while they run) and tiles the VAE decode so that each run's plan
   *  fits, and refuses a run whose leanest plan does not (src/pipeline/budget.ts). */
  readonly maxMemory?: number;
  /** Another SDXL VAE instead of the model's: a diffusers vae folder (config.json and
   *  diffusion_pytorch_model(.fp16).safetensors) or a single .safetensors file in diffusers or
   *  SGM/original naming (run with the model's VAE config). Node: a path or URL; browser: a
   *  URL, a Blob, or a ModelFs of the folder. A config with force_upcast false (the fp16-fix
   *  VAE) runs in f16 where the UNet does. */
  readonly vae?: VaeSource;
  /** Per-kernel GPU timings (timestamp-query). */
  readonly profile?: boolean;
  /** Try the tensor-core matmul (GpuOptions.subgroupMatrix): used only where the adapter offers
   *  a fitting config and its start-up self-check passes. Default false. */
  readonly subgroupMatrix?: boolean;
  /** The scheduler instead of scheduler_config.json's class: 'euler' (EulerDiscreteScheduler,
   *  SDXL base's) or 'euler-a' (EulerAncestralDiscreteScheduler, SDXL-Turbo's). */
  readonly scheduler?: SchedulerName;
  /** The timestep spacing instead of scheduler_config.json's (SDXL base: 'leading';
   *  SDXL-Turbo: 'trailing'). */
  readonly timestepSpacing?: TimestepSpacing;
  /** Progress of the load (download, then weights). */
  readonly onProgress?: (event: ProgressEvent) => void;
  /** Cancels the load: it rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
}

export interface GenerateOptions {
  /** One prompt, or several (one batch row each). The empty prompt is allowed. */
  readonly prompt: string | readonly string[];
  /** Denoising steps (SDXL-Turbo: 1–4; default 1; image-to-image: the fewest of which the
   *  strength keeps one, e.g. 2 at strength 0.5). */
  readonly steps?: number;
  /** Seed of the torch-compatible CPU generator, torch's whole range 0 … 2⁶⁴ − 1 (a bigint
   *  above 2⁵³ − 1; torch's mt19937 keeps the low 32 bits); default, or -1: random (the result
   *  says which). */
  readonly seed?: number | bigint;
  /** Image size, multiples of 8 (default 512; image-to-image: the input's, rounded down to 8). */
  readonly width?: number;
  readonly height?: number;
  readonly imagesPerPrompt?: number;
  /** Classifier-free guidance scale (default 0: off, as SDXL-Turbo is made to run). Above 1
   *  the UNet runs on [negative, positive] and ε = ε_neg + g·(ε_pos − ε_neg), as diffusers. */
  readonly guidanceScale?: number;
  /** The negative prompt(s) of guidance: one for every prompt, or one per prompt. Without it,
   *  the negative embeddings are zeros when model_index.json's force_zeros_for_empty_prompt is
   *  true (SDXL's), else those of "". Ignored when guidanceScale ≤ 1, as in diffusers. */
  readonly negativePrompt?: string | readonly string[];
  /** Parity: supplies every random tensor by name instead of drawing it from the seed
   *  (initial_latents, step{i}.noise, posterior_noise, add_noise_noise). */
  readonly inputs?: ReadonlyMap<string, Float32Array>;
  /** Also return final latents, float image and prompt embeddings. */
  readonly returnTensors?: boolean;
  /** Cancels between stages and steps: the call rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: ProgressEvent) => void;
}

export interface ImageToImageOptions extends GenerateOptions {
  readonly image: RgbImage;
  /** How much of the schedule to run, in (0, 1] (default 0.5). */
  readonly strength?: number;
}

/**
 * The generate() or imageToImage() call to come (image-to-image when `image` is given), which
 * loadPipeline checks against the model and the device before any weight is uploaded.
 */
export type Preflight = Partial<
  Pick<ImageToImageOptions, 'prompt' | 'steps' | 'width' | 'height' | 'imagesPerPrompt' | 'image' | 'strength' | 'inputs' | 'guidanceScale' | 'negativePrompt'>
>;

export interface ResolvedGenerate {
  readonly prompts: string[];
  /** Steps of the schedule; image-to-image runs `denoisingSteps` of them. */
  readonly steps: number;
  readonly denoisingSteps: number;
  readonly seed: number | bigint;
  readonly width: number;
  readonly height: number;
  readonly imagesPerPrompt: number;
  /** Rows of the batch: prompts × images per prompt. */
  readonly batch: number;
  /** Image-to-image only. */
  readonly strength: number | null;
  readonly guidanceScale: number;
  /** guidanceScale > 1: the UNet runs on the negative and positive batch. */
  readonly guidance: boolean;
  /** One negative prompt per prompt, or null when none was given. */
  readonly negativePrompts: string[] | null;
}

export const DEFAULT_SIZE = 512;
export const DEFAULT_STRENGTH = 0.5;
/** Latent downsampling of the SDXL VAE (3 downsamples). */
export const VAE_SCALE = 8;

// The largest values accepted (far beyond SDXL-Turbo's 1–4 steps at 512²); whether a size fits
// the device is checked against its limits separately (pipeline/preflight.ts).
export const MAX_STEPS = 1000;
export const MAX_SIZE = 16384;
export const MAX_IMAGES_PER_PROMPT = 64;
/** The most rows of one batch: prompts × imagesPerPrompt. */
export const MAX_BATCH = 64;

/** A value as given, for a message (JSON.stringify throws on a bigint). */
function shown(value: unknown): string {
  return typeof value === 'bigint' ? `${value}n` : JSON.stringify(value) ?? String(value);
}

export function checkInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    usage(`${name} must be an integer in [${min}, ${max}], got ${shown(value)}`, name);
  }
  return value;
}

export const MAX_SEED = 2n ** 64n - 1n;

/** A seed in torch's range [0, 2⁶⁴ − 1]: a safe integer number or a bigint, kept as given. */
export function checkSeed(value: unknown): number | bigint {
  const ok = (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) || (typeof value === 'bigint' && value >= 0n && value <= MAX_SEED);
  if (!ok) {
    const text = typeof value === 'bigint' ? String(value) : typeof value === 'number' && !Number.isSafeInteger(value) && Number.isInteger(value) ? `${String(value)} (not exact as a number: pass a bigint)` : shown(value);
    usage(`seed must be an integer in [0, ${MAX_SEED}], got ${text}`, 'seed');
  }
  return value as number | bigint;
}

/** An image side: a multiple of 8 (the VAE's scale) in [8, MAX_SIZE]. */
export function checkSize(name: string, value: unknown): number {
  const v = checkInteger(name, value, VAE_SCALE, MAX_SIZE);
  if (v % VAE_SCALE !== 0) usage(`${name} must be a multiple of ${VAE_SCALE}, got ${v}`, name);
  return v;
}

/** Every option of a generation with its default; `imageToImage` when the call has an image. */
export function resolveGenerate(o: Partial<ImageToImageOptions>, imageToImage: boolean): ResolvedGenerate {
  const prompts = o.prompt === undefined ? [''] : typeof o.prompt === 'string' ? [o.prompt] : Array.isArray(o.prompt) ? [...(o.prompt as string[])] : null;
  if (!prompts || prompts.length === 0 || prompts.some((p) => typeof p !== 'string')) {
    usage(`prompt must be a string or a non-empty array of strings, got ${JSON.stringify(o.prompt)}`, 'prompt');
  }
  if (!imageToImage && o.strength !== undefined) usage('strength needs image (image-to-image)', 'strength');
  const image = imageToImage ? checkImage(o.image) : null;
  const strength = image ? checkStrength(o.strength ?? DEFAULT_STRENGTH) : null;
  const steps = checkInteger('steps', o.steps ?? (strength === null ? 1 : fewestSteps(strength)), 1, MAX_STEPS);
  const size = image ? imageDefaultSize(image) : { width: DEFAULT_SIZE, height: DEFAULT_SIZE };
  const imagesPerPrompt = checkInteger('imagesPerPrompt', o.imagesPerPrompt ?? 1, 1, MAX_IMAGES_PER_PROMPT);
  if (prompts.length * imagesPerPrompt > MAX_BATCH) {
    const what = prompts.length > MAX_BATCH ? 'prompt' : 'imagesPerPrompt';
    usage(`${what}: ${prompts.length} prompts × ${imagesPerPrompt} images per prompt = ${prompts.length * imagesPerPrompt} images, above the limit of ${MAX_BATCH} per call`, what);
  }
  const guidanceScale = o.guidanceScale ?? 0;
  if (typeof guidanceScale !== 'number' || !Number.isFinite(guidanceScale) || guidanceScale < 0) {
    usage(`guidanceScale must be a finite number ≥ 0 (0 or ≤ 1: off), got ${JSON.stringify(o.guidanceScale)}`, 'guidanceScale');
  }
  return {
    prompts,
    steps,
    denoisingSteps: strength === null ? steps : img2imgSteps(steps, strength),
    seed: o.seed === undefined || o.seed === -1 || o.seed === -1n ? Math.floor(Math.random() * 2 ** 32) : checkSeed(o.seed),
    width: checkSize('width', o.width ?? size.width),
    height: checkSize('height', o.height ?? size.height),
    imagesPerPrompt,
    batch: prompts.length * imagesPerPrompt,
    strength,
    guidanceScale,
    guidance: guidanceScale > 1,
    negativePrompts: negativePrompts(o.negativePrompt, prompts.length),
  };
}

/** As diffusers' encode_prompt: a string applies to every prompt, a list has one per prompt. */
function negativePrompts(negative: unknown, prompts: number): string[] | null {
  if (negative === undefined) return null;
  const list = typeof negative === 'string' ? Array<string>(prompts).fill(negative) : Array.isArray(negative) ? [...(negative as unknown[])] : null;
  if (!list || list.some((p) => typeof p !== 'string')) usage(`negativePrompt must be a string or an array of strings, got ${JSON.stringify(negative)}`, 'negativePrompt');
  if (list.length !== prompts) usage(`negativePrompt has ${list.length} prompts, expected one per prompt (${prompts}) or a single string`, 'negativePrompt');
  return list as string[];
}

/** The `weights` option, checked. */
export function checkWeightsOption(weights: unknown): 'q8' | undefined {
  if (weights !== undefined && weights !== 'q8') usage(`weights must be "q8" (8-bit weights) or left out (the files' dtype), got ${shown(weights)}`, 'weights');
  return weights;
}

/** The scheduler options, checked: the class and spacing replacing scheduler_config.json's. */
export function schedulerOverrides(o: Pick<PipelineOptions, 'scheduler' | 'timestepSpacing'>): SchedulerOverrides {
  const check = <T extends string>(name: string, value: unknown, allowed: readonly T[]): T | undefined => {
    if (value !== undefined && !(allowed as readonly unknown[]).includes(value)) usage(`${name} must be ${allowed.join(', ')}, got ${JSON.stringify(value)}`, name);
    return value as T | undefined;
  };
  const scheduler = check('scheduler', o.scheduler, SCHEDULERS);
  const timestepSpacing = check('timestepSpacing', o.timestepSpacing, TIMESTEP_SPACINGS);
  return { ...(scheduler ? { scheduler } : {}), ...(timestepSpacing ? { timestepSpacing } : {}) };
}

export function checkStrength(strength: unknown): number {
  if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) usage(`strength must be in (0, 1], got ${JSON.stringify(strength)}`, 'strength');
  return strength;
}

/** Image-to-image without steps: the fewest of which the strength keeps one (2 at 0.5);
 *  a strength that needs more than MAX_STEPS is refused (1e-18 would need 10¹⁸). */
export function fewestSteps(strength: number): number {
  const least = Math.ceil(1 / strength);
  // At most MAX_STEPS + 1 candidates: 1/strength rounded down in floating point is off by a few.
  for (let steps = Math.max(1, least); steps <= MAX_STEPS; steps++) {
    if (Math.floor(steps * strength) >= 1) return steps;
  }
  return usage(`strength ${strength} keeps no denoising step within the limit of ${MAX_STEPS} steps (it needs ${least > MAX_STEPS ? `about ${least}` : 'more'}); use a strength ≥ ${1 / MAX_STEPS}`, 'strength');
}

/** The denoising steps image-to-image runs: the last min(⌊steps·strength⌋, steps) of the
 *  schedule (diffusers' get_timesteps, as the scheduler's img2imgSchedule keeps them), at least 1. */
export function img2imgSteps(steps: number, strength: number): number {
  const kept = Math.min(Math.floor(steps * strength), steps);
  if (kept < 1) usage(`steps ${steps} × strength ${strength} = ${steps * strength} < 1 leaves no denoising step; raise steps or strength`, 'steps');
  return kept;
}

export function checkImage(image: RgbImage | undefined): RgbImage {
  if (!image || !(image.data instanceof Uint8Array) || image.data.length !== image.width * image.height * 3) {
    usage('image must be an RGB image { width, height, data: Uint8Array of width·height·3 bytes }', 'image');
  }
  return image;
}

/** Image-to-image's size when none is given: the image's, rounded down to a multiple of 8 as
 *  diffusers' image processor rounds it. */
export function imageDefaultSize(image: RgbImage): { width: number; height: number } {
  const size = { width: image.width - (image.width % VAE_SCALE), height: image.height - (image.height % VAE_SCALE) };
  if (size.width < VAE_SCALE || size.height < VAE_SCALE) usage(`image ${image.width}×${image.height} is smaller than ${VAE_SCALE}×${VAE_SCALE}`, 'image');
  return size;
}
