// Checks of one generation that need the model's configs (and for the buffers the device's
// limits) but no weights, so a run that cannot work fails before anything is uploaded:
// checkRun — the configs parse, the random tensors supplied by name have the shapes the run
// draws; planRun — every buffer the networks allocate fits the adapter's limits (the memory
// plan's replay of each forward knows every one of them).

import { usage } from '../errors.js';
import type { ModelFolder } from '../io/model-folder.js';
import { parseCLIPTextConfig } from '../models/clip.js';
import { type MemoryPlanOptions, type NetworkMemory, planMemory, vaeEncodeActivationPeak } from '../models/memory-plan.js';
import { parseUNetConfig, type UNetConfig } from '../models/unet.js';
import { parseVaeConfig, type VaeConfig } from '../models/vae.js';
import { type DType, formatShape, numel } from '../tensor.js';
import { VAE_SCALE } from './options.js';

export interface RunShape {
  readonly width: number;
  readonly height: number;
  /** Rows of the batch: prompts × images per prompt. */
  readonly batch: number;
  /** Denoising steps actually run (image-to-image: those its strength keeps). */
  readonly steps: number;
  readonly imageToImage: boolean;
}

/** The networks' configs, checked with messages naming each file. */
function parseConfigs(folder: ModelFolder): { unet: UNetConfig; vae: VaeConfig } {
  const where = (component: string): string => `${folder.description}/${component}/config.json`;
  parseCLIPTextConfig(folder.config('text_encoder'), where('text_encoder'));
  parseCLIPTextConfig(folder.config('text_encoder_2'), where('text_encoder_2'));
  return { unet: parseUNetConfig(folder.config('unet'), where('unet')), vae: parseVaeConfig(folder.config('vae'), where('vae')) };
}

/**
 * The run against the model: its configs, and `inputs` (random tensors by name, see
 * GenerateOptions.inputs) against what the run draws; `where` names the inputs' source in
 * messages. Any size of multiples of 8 (checkSize) suits the UNet, as in diffusers: it rounds
 * odd latent sides up on the way down and meets each skip's size on the way up.
 */
export function checkRun(folder: ModelFolder, run: RunShape, inputs: ReadonlyMap<string, Float32Array> | undefined, where: string): void {
  const { unet, vae } = parseConfigs(folder);
  if (!inputs) return;
  const [h, w] = [run.height / VAE_SCALE, run.width / VAE_SCALE];
  const shapes = new Map<string, number[]>();
  if (run.imageToImage) {
    // One posterior sample of the single input image, then noise for the repeated batch.
    shapes.set('posterior_noise', [1, vae.latentChannels, h, w]);
    shapes.set('add_noise_noise', [run.batch, vae.latentChannels, h, w]);
  } else {
    shapes.set('initial_latents', [run.batch, unet.inChannels, h, w]);
  }
  for (let i = 0; i < run.steps; i++) shapes.set(`step${i}.noise`, [run.batch, unet.inChannels, h, w]);
  for (const [name, data] of inputs) {
    const shape = shapes.get(name);
    if (!shape) usage(`${where}: ${name} is not drawn by this run (it draws ${[...shapes.keys()].join(', ')})`);
    if (data.length !== numel(shape)) usage(`${where}: ${name} has ${data.length} values, expected ${numel(shape)} for shape ${formatShape(shape)}`);
  }
}

export interface RunMemory {
  readonly plan: NetworkMemory[];
  readonly options: MemoryPlanOptions;
}

/** The device limits a run's buffers must fit. */
export type BufferLimits = Pick<GPUSupportedLimits, 'maxBufferSize' | 'maxStorageBufferBindingSize'>;

/**
 * The memory plan of the run (weights in `dtype`, the VAE in f32, decode tiles as the VAE picks
 * them: under its maxActivationBytes, by default the device's maxBufferSize); a UsageError if a
 * network needs a buffer over maxBufferSize, or a tensor that an op binds whole (concat,
 * transpose12) over maxStorageBufferBindingSize. Run checkRun first.
 */
export function planRun(folder: ModelFolder, run: RunShape, dtype: DType, limits: BufferLimits, vaeMaxActivationBytes = limits.maxBufferSize): RunMemory {
  const options: MemoryPlanOptions = { width: run.width, height: run.height, batch: run.batch, dtype, vaeDtype: 'f32', vaeMaxActivationBytes };
  const configs = { textEncoder: folder.config('text_encoder'), textEncoder2: folder.config('text_encoder_2'), unet: folder.config('unet'), vae: folder.config('vae') };
  const plan = planMemory(configs, options);
  const needs = plan.filter((r) => r.network !== 'vae encode').map((r) => ({ network: r.network, buffer: r.largestBytes, whole: r.largestWholeBytes }));
  if (run.imageToImage) {
    // The pipeline encodes the single input image once (the plan's encode row is per batch row).
    const encode = vaeEncodeActivationPeak(parseVaeConfig(configs.vae), 1, run.height, run.width, 'f32');
    needs.push({ network: 'vae encode', buffer: encode.largest, whole: encode.largestWhole });
  }
  const size = `${run.width}×${run.height}${run.batch > 1 ? ` × ${run.batch} images` : ''}`;
  const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;
  for (const n of needs) {
    if (n.buffer > limits.maxBufferSize) {
      usage(`${size} is too large for this device: the ${n.network} needs a ${mb(n.buffer)} buffer, over the adapter's maxBufferSize of ${mb(limits.maxBufferSize)}; use a smaller size or fewer images`);
    }
    if (n.whole > limits.maxStorageBufferBindingSize) {
      usage(
        `${size} is too large for this device: the ${n.network} binds a ${mb(n.whole)} tensor whole (concat or transpose), over the adapter's ` +
          `maxStorageBufferBindingSize of ${mb(limits.maxStorageBufferBindingSize)}; use a smaller size or fewer images`,
      );
    }
  }
  return { plan, options };
}
