// The dry run: the generation (generation.ts) run on a RecordingGpu, with fresh models built
// from the configs, shape-only weights and zero draws. Everything the checks before a run
// need comes from it, none restated by hand: the memory plan (ForwardMeter), the largest
// buffer and binding against the adapter's limits, the random tensors the run draws, and the
// dispatch list.

import type { Specialization } from '../gpu/pipeline-cache.js';
import { type RecordedDispatch, RecordingGpu, type RecordingLimits } from '../gpu/recording.js';
import type { Tuning } from '../gpu/tuning.js';
import type { TensorEntry } from '../io/tensor-source.js';
import { CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig } from '../models/clip.js';
import { describeVaePass } from '../models/decode-tiling.js';
import { declareWeights, ForwardMeter, type MemoryPlanOptions, type NetworkMemory } from '../models/memory-plan.js';
import { parseUNetConfig, UNet2DConditionModel } from '../models/unet.js';
import { AutoencoderKL, parseVaeConfig, vaeDtype } from '../models/vae.js';
import type { WeightRegistry } from '../models/weights.js';
import { type DType, numel } from '../tensor.js';
import { runGeneration, type GenerationInput, type NetworkName } from './generation.js';
import type { WeightFormat } from './options.js';
import { EulerScheduler, type SchedulerOverrides } from './scheduler.js';

/** The raw config.json of each component (e.g. from a model folder or sdxl-turbo-layout). */
export interface PipelineConfigs {
  readonly textEncoder: unknown;
  readonly textEncoder2: unknown;
  readonly unet: unknown;
  readonly vae: unknown;
  readonly scheduler: unknown;
  /** The weight files' tables, where known: a budget's plan runs each network's load on them
   *  (the formats decide the staged casts); absent, each tensor is taken in the compute dtype. */
  readonly weightTables?: Partial<Record<LoadedNetwork, ReadonlyMap<string, TensorEntry>>>;
}

/** The networks a pipeline loads weights for. */
export type LoadedNetwork = 'text_encoder' | 'text_encoder_2' | 'unet' | 'vae';

/** The device a run is planned for. */
export interface PlannedDevice {
  /** Its limits (default: WebGPU's defaults). */
  readonly limits?: RecordingLimits;
  /** Whether it has shader-f16 (default true). */
  readonly f16?: boolean;
  /** Whether it has subgroups enabled (default false). */
  readonly subgroups?: boolean;
  /** Its variant choices (default: every launcher's heuristic). */
  readonly tuning?: Tuning;
  /** AutoencoderKL.maxActivationBytes of the pipeline's VAE (default: maxBufferSize). */
  readonly vaeMaxActivationBytes?: number | null;
  /** Its maxEncodeActivationBytes (default: maxBufferSize). */
  readonly vaeMaxEncodeActivationBytes?: number | null;
}

export interface Draw {
  readonly name: string;
  readonly shape: readonly number[];
}

export interface DryRun {
  /** A row per network that ran, in run order. */
  readonly plan: NetworkMemory[];
  /** The random tensors the run draws, in order. */
  readonly draws: readonly Draw[];
  readonly dispatches: readonly RecordedDispatch[];
  /** The pipelines the dispatches use, each once: what Gpu.compile() warms up. */
  readonly specializations: readonly Specialization[];
  /** The largest buffer of the whole run (weights included) and the largest binding. */
  readonly largestBuffer: number;
  readonly largestBinding: number;
}

/** A forward of the dry run threw: `network` names it (null: between the forwards). */
export class DryRunError extends Error {
  constructor(readonly network: NetworkName | null, override readonly cause: unknown) {
    super(`dry run${network ? ` of the ${network}` : ''}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

/** Limits that bound nothing, for dry runs that only need the draws or the plan. */
export const UNBOUNDED: RecordingLimits = { maxBufferSize: 2 ** 52, maxStorageBufferBindingSize: 2 ** 52 };

/** Runs `input`'s generation on a recording device shaped like `device`. */
export async function dryRun(configs: PipelineConfigs, input: GenerationInput, device: PlannedDevice = {}): Promise<DryRun> {
  const gpu = new RecordingGpu(device.limits, device.f16, device.subgroups, device.tuning);
  const te1 = CLIPTextModel.create(parseCLIPTextConfig(configs.textEncoder, 'text_encoder/config.json'));
  const te2 = CLIPTextModelWithProjection.create(parseCLIPTextConfig(configs.textEncoder2, 'text_encoder_2/config.json'));
  const unet = UNet2DConditionModel.create(parseUNetConfig(configs.unet, 'unet/config.json'));
  const vaeConfig = parseVaeConfig(configs.vae, 'vae/config.json');
  const vae = AutoencoderKL.create(vaeConfig);
  vae.maxActivationBytes = device.vaeMaxActivationBytes ?? null;
  vae.maxEncodeActivationBytes = device.vaeMaxEncodeActivationBytes ?? null;
  // Weights first, as the pipeline loads them; one over maxBufferSize fails like an activation.
  const q8 = input.weights === 'q8';
  const declare = (network: NetworkName, registry: WeightRegistry, dtype: DType, quantized = q8): number => {
    try {
      return declareWeights(gpu, registry, dtype, quantized);
    } catch (e) {
      throw new DryRunError(network, e);
    }
  };
  const weights = new Map<NetworkName, number | null>([
    ['text_encoder', declare('text_encoder', te1.registry, input.dtype)],
    ['text_encoder_2', declare('text_encoder_2', te2.registry, input.dtype)],
    ['unet context', null],
    ['unet', declare('unet', unet.registry, input.dtype)],
    // The VAE in its own dtype (vaeDtype: f32 for SDXL's); decode and encode share its weights.
    ['vae decode', declare('vae decode', vae.registry, vaeDtype(vaeConfig, input.dtype), false)],
    ['vae encode', null],
  ]);
  const draws: Draw[] = [];
  const meter = new ForwardMeter<NetworkName>(gpu);
  const networks = {
    textEncoders: async () => ({ te1, te2 }),
    promptsEncoded: async () => {},
    unet,
    vae,
  };
  try {
    await runGeneration(gpu, networks, input, {
      draw: (name, shape) => (draws.push({ name, shape }), new Float32Array(numel(shape))),
      stage: async (_, body) => body(),
      network: (name, forward) => meter.measure(name, forward),
      progress: () => {},
      checkAborted: () => {},
    });
  } catch (e) {
    throw new DryRunError(meter.current, e);
  }
  const [h, w] = [input.height / vae.scale, input.width / vae.scale];
  // How the VAE split its passes: the decode of the batch, the encode of the one input image.
  const split = (pass: 'decode' | 'encode', images: number, limit: number | null | undefined): string =>
    describeVaePass(pass, vaeConfig, [images, vaeConfig.latentChannels, h, w], vae.dtype, limit ?? gpu.limits.maxBufferSize, () => AutoencoderKL.create(vaeConfig), gpu.limits);
  const precision = q8 ? `${input.dtype}, 8-bit weights` : input.dtype;
  const notes: Record<NetworkName, string> = {
    text_encoder: precision,
    text_encoder_2: precision,
    'unet context': `${precision}, once per generation: cross-attention k|v of the prompts`,
    unet: precision,
    'vae decode': `${vae.dtype}, ${split('decode', input.batch, device.vaeMaxActivationBytes)}`,
    'vae encode': input.image ? `${vae.dtype}, ${split('encode', 1, device.vaeMaxEncodeActivationBytes)}, image-to-image only` : '', // no row without an image
  };
  const plan = [...meter.forwards].map(([network, forward]) => ({ network, weightBytes: weights.get(network) ?? null, ...forward, note: notes[network] }));
  return { plan, draws, dispatches: gpu.dispatches, specializations: [...gpu.specializations.values()], largestBuffer: gpu.largestBuffer, largestBinding: gpu.largestBinding };
}

/** What a run is, as far as its shapes go. */
export interface RunShape {
  readonly width: number;
  readonly height: number;
  /** Rows of the batch: prompts × images per prompt. */
  readonly batch: number;
  /** Denoising steps actually run (image-to-image: those its strength keeps). */
  readonly steps: number;
  readonly imageToImage: boolean;
  /** Classifier-free guidance (the UNet runs on twice the batch; default off). */
  readonly guidance?: boolean;
  /** The scheduler options of the pipeline (the spacing decides the count of steps). */
  readonly scheduler?: SchedulerOverrides;
  /** The pipeline's weights: 'q8' runs the 8-bit specializations of matmul and conv2d. */
  readonly weights?: WeightFormat;
}

/** A generation of `run`'s shapes with zero token ids and a zero image: what a dry run needs
 *  when the prompts are not known yet (draws, buffers and dispatches do not depend on them). */
export function shapeInput(configs: PipelineConfigs, run: RunShape, dtype: GenerationInput['dtype']): GenerationInput {
  const ids = (config: unknown, where: string): Int32Array => new Int32Array(run.batch * parseCLIPTextConfig(config, where).maxPositionEmbeddings);
  const bothIds = (): [Int32Array, Int32Array] => [ids(configs.textEncoder, 'text_encoder/config.json'), ids(configs.textEncoder2, 'text_encoder_2/config.json')];
  return {
    width: run.width,
    height: run.height,
    batch: run.batch,
    ids: bothIds(),
    // Image-to-image keeps the last steps of a longer schedule: the same shapes and dispatches.
    schedule: EulerScheduler.fromConfigJson(configs.scheduler, run.scheduler).schedule(run.steps),
    // A negative prompt to encode: the most a guided run does (zeros need no encoding).
    guidance: run.guidance ? { scale: 2, negativeIds: bothIds() } : null,
    image: run.imageToImage ? new Float32Array(3 * run.height * run.width) : null,
    dtype,
    ...(run.weights ? { weights: run.weights } : {}),
    returnTensors: false,
  };
}

/** The memory plan of `options`' run (text-to-image, or image-to-image with the VAE encode;
 *  guided or not) on a device without limits but the VAE's: the dry run of the real forwards. */
export async function planMemory(configs: PipelineConfigs, options: MemoryPlanOptions & { steps?: number; imageToImage?: boolean; guidance?: boolean }): Promise<NetworkMemory[]> {
  const run = { width: options.width, height: options.height, batch: options.batch, steps: options.steps ?? 1, imageToImage: options.imageToImage ?? false, guidance: options.guidance ?? false, ...(options.weights ? { weights: options.weights } : {}) };
  const device = { limits: UNBOUNDED, vaeMaxActivationBytes: options.vaeMaxActivationBytes ?? null, vaeMaxEncodeActivationBytes: options.vaeMaxEncodeActivationBytes ?? null };
  return (await dryRun(configs, shapeInput(configs, run, options.dtype), device)).plan;
}
