// One generation, written once: prompt embeddings, starting latents (noise, or the encoded
// image with add_noise), the Euler (ancestral or plain) denoising loop, with classifier-free
// guidance when asked, and the VAE decode, over any device. SdxlTurboPipeline runs it on the
// GPU with loaded weights and the seeded generator; the dry run (dry-run.ts) runs it on a
// RecordingGpu with shape-only weights and zero draws, which is where the memory plan, the
// buffer checks and the list of draws come from.
//
// Random draws come in diffusers' order: text-to-image: initial latents, then one noise per
// step; image-to-image: the VAE posterior sample, the add_noise noise, then one per step.
//
// Guidance runs as diffusers' StableDiffusionXLPipeline with guidance_scale > 1: the UNet sees
// the batch [negative rows, positive rows] (latents twice; prompt embeddings, pooled
// embeddings and time ids stacked the same way) and ε = ε_neg + g·(ε_pos − ε_neg).

import { replayForward } from '../gpu/replay.js';
import { type Gpu, WebGpuRuntime } from '../gpu/runtime.js';
import type { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip.js';
import type { UNet2DConditionModel, UNetInputs } from '../models/unet.js';
import { type AutoencoderKL, samplePosterior } from '../models/vae.js';
import { axpby } from '../ops/binary.js';
import { eulerCoefficients, eulerStep, scaleModelInput } from '../ops/euler.js';
import { cast, uploadAs } from '../ops/cast.js';
import { concat } from '../ops/concat.js';
import { cropSpatial } from '../ops/tiles.js';
import { type DType, take, Tensor, tidy } from '../tensor.js';
import type { ProgressEvent, Stage, WeightFormat } from './options.js';
import type { EulerSchedule } from './scheduler.js';

/** The forwards a generation runs, as the memory plan names them. */
export type NetworkName = 'text_encoder' | 'text_encoder_2' | 'unet context' | 'unet' | 'vae decode' | 'vae encode';

export interface TextEncoders {
  readonly te1: CLIPTextModel;
  readonly te2: CLIPTextModelWithProjection;
}

export interface Networks {
  /** The text encoders, loaded again if they were released. */
  textEncoders(): Promise<TextEncoders>;
  /** Called once the prompts are encoded (the pipeline may release the encoders then). */
  promptsEncoded(): Promise<void>;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
}

export interface GenerationInput {
  readonly width: number;
  readonly height: number;
  /** Rows of the batch: prompts × images per prompt. */
  readonly batch: number;
  /** Each row's token ids for each tokenizer, rows back to back: (B · L) each. */
  readonly ids: readonly [Int32Array, Int32Array];
  readonly schedule: EulerSchedule;
  /** Classifier-free guidance, or null (off). */
  readonly guidance: Guidance | null;
  /** Image-to-image: the input image at width × height as (1, 3, H, W) in [−1, 1]. */
  readonly image: Float32Array | null;
  /** Compute dtype of the UNet (the text encoders' and the VAE's weights carry theirs). */
  readonly dtype: DType;
  /** The UNet's and text encoders' Linear and conv weights are 8-bit (the dry run declares them so). */
  readonly weights?: WeightFormat;
  /** Read back the final latents and the prompt embeddings too. */
  readonly returnTensors: boolean;
}

export interface Guidance {
  readonly scale: number;
  /** The negative prompts' token ids as `ids`, or null: zero embeddings
   *  (force_zeros_for_empty_prompt without a negative prompt). */
  readonly negativeIds: readonly [Int32Array, Int32Array] | null;
}

export interface GenerationHooks {
  /** The random tensor `name` of `shape`: the generator's next draw, or a supplied one. */
  draw(name: string, shape: number[]): Float32Array;
  /** The GPU has the prompts' work: a run that knows its draws may make them all now, on the
   *  CPU meanwhile, instead of between GPU work (each draw then returns its share). */
  drawAhead?(): void;
  /** Runs one stage (timed, and awaited on the device, by the real run). */
  stage<T>(name: Stage, body: () => T | Promise<T>): Promise<T>;
  /** Runs one network's forward (the dry run meters each). */
  network<T>(name: NetworkName, forward: () => T): T;
  progress(event: ProgressEvent): void;
  /** Throws when the caller has cancelled. */
  checkAborted(): void;
  /** Prompt embeddings kept between generations (the live session's LRU), or none. */
  readonly promptCache?: PromptCache;
}

/**
 * Embeddings by token ids, kept across generations: a hit skips the text encoders. The cache
 * owns the tensors it returns (the generation never releases them) and frees them on eviction.
 */
export interface PromptCache {
  embeddings(ids: readonly [Int32Array, Int32Array], encode: () => Promise<Embeddings<Tensor>>): Promise<Embeddings<Tensor>>;
}

/** A tensor read back. */
export interface HostTensor {
  readonly shape: number[];
  readonly data: Float32Array;
}

/** Prompt embeddings (B, 77, D) and pooled ones (B, P). */
export interface Embeddings<T> {
  readonly promptEmbeds: T;
  readonly pooled: T;
}

export interface GenerationOutput {
  /** The raw decoded images (B, 3, H, W). */
  readonly decoded: Float32Array;
  /** With returnTensors: the final latents, the prompt embeddings and the pooled ones (and the
   *  negative ones when guidance ran). */
  readonly tensors: { readonly latents: HostTensor; readonly positive: Embeddings<HostTensor>; readonly negative: Embeddings<HostTensor> | null } | null;
}

/** Runs one generation on `gpu` with `networks`; every tensor it makes is released by its end. */
export async function runGeneration(gpu: Gpu, networks: Networks, input: GenerationInput, hooks: GenerationHooks): Promise<GenerationOutput> {
  const { batch, schedule } = input;
  const { unet, vae } = networks;
  const [h, w] = [input.height / vae.scale, input.width / vae.scale];
  const latentShape = [batch, unet.config.inChannels, h, w];
  const owned: Array<{ release(): void }> = [];
  const hold = <T extends { release(): void }>(t: T): T => (owned.push(t), t);
  // The current step's latents (each step's scope releases the previous ones): released below
  // whichever stage fails or is cancelled. Assigned before any use; undefined only if none ran.
  let latents!: Tensor;
  try {
    // 1. prompt embeddings (B, 77, 2048) and pooled (B, 1280), the negative ones with guidance
    const { positive, negative, made } = await hooks.stage('encode-prompt', async () => {
      hooks.progress({ stage: 'encode-prompt', done: 0, total: 1 });
      const out = await encodePrompts(networks, input, hooks);
      // Submitted first, so that the GPU runs the text encoders while the CPU draws (tens of ms
      // at 512² on a slow CPU before V8 has optimized the generator).
      gpu.flush();
      hooks.drawAhead?.();
      hooks.progress({ stage: 'encode-prompt', done: 1, total: 1 });
      return out;
    });
    made.forEach(hold);
    // The UNet's conditioning: [negative, positive] rows with guidance; the time ids of both
    // halves are the same.
    const [promptEmbeds, pooled] = negative
      ? [hold(concat([negative.promptEmbeds, positive.promptEmbeds], 0)), hold(concat([negative.pooled, positive.pooled], 0))]
      : [positive.promptEmbeds, positive.pooled];
    const unetBatch = negative ? 2 * batch : batch;
    const timeIds = Array.from({ length: unetBatch }, () => [input.height, input.width, 0, 0, input.height, input.width]).flat();

    // 2. starting latents (f32)
    if (input.image) {
      const image = input.image;
      latents = await hooks.stage('encode-image', () => {
        hooks.progress({ stage: 'encode-image', done: 0, total: 1 });
        return imageLatents(gpu, vae, image, input, hooks);
      });
      hooks.progress({ stage: 'encode-image', done: 1, total: 1 });
    } else {
      const initial = hooks.draw('initial_latents', latentShape);
      latents = Tensor.upload(gpu, initial.map((x) => Math.fround(x * schedule.initNoiseSigma)), 'f32', latentShape, 'f32', { label: 'latents' });
    }

    // 3. denoising loop: nothing is read back. The step's numbers (timestep; input scale, dt
    // and σ_up) and Euler-A's noise are written into reused tensors once per step, so on a
    // WebGpuRuntime the whole step (scheduler and UNet) is recorded once and replayed
    // (gpu/replay.ts), here and in later runs of the same shapes.
    const noise = schedule.ancestral ? hold(Tensor.empty(gpu, latentShape, 'f32', 'step noise')) : null;
    const timestep = hold(Tensor.empty(gpu, [unetBatch], 'f32', 'step timestep'));
    const coefficients = hold(Tensor.empty(gpu, [3], 'f32', 'step coefficients'));
    // The prompts' part of the UNet (every cross-attention's k|v), once for all steps.
    const context = hold(hooks.network('unet context', () => unet.prepareContext(promptEmbeds)));
    const step = (x: StepInputs): Tensor => denoiseStep(unet, x, hooks);
    const replayed = gpu instanceof WebGpuRuntime && gpu.replayForwards;
    await hooks.stage('denoise', async () => {
      for (let i = 0; i < schedule.length; i++) {
        hooks.checkAborted();
        const s = schedule.step(i);
        gpu.write(timestep.buffer, new Float32Array(unetBatch).fill(s.timestep));
        gpu.write(coefficients.buffer, eulerCoefficients(s));
        // The noise is drawn every step, as torch draws it (plain Euler, σ_up = 0, never uses it).
        const drawn = hooks.draw(`step${i}.noise`, latentShape);
        if (noise) gpu.write(noise.buffer, drawn);
        // Everything the step depends on is in its inputs: a replay is keyed on them.
        const inputs: StepInputs = {
          latents,
          noise,
          coefficients,
          unet: { timestep, encoderHiddenStates: promptEmbeds, textEmbeds: pooled, timeIds, context },
          dtype: input.dtype,
          guidance: input.guidance ? { scale: input.guidance.scale, batch } : null,
        };
        // The previous step's latents are this step's last use of them: the scope releases them.
        // The prompts' tensors are the same through the generation: copied into the replay once.
        latents = tidy(() => (take(latents), replayed ? replayForward(gpu, unet, inputs, step, [promptEmbeds, pooled, context]) : step(inputs))); // (B, 4, h, w) f32
        // Each step waits for the GPU: its progress event is the step done, and a cancel lands
        // before the next one is recorded.
        await gpu.sync();
        hooks.progress({ stage: 'denoise', done: i + 1, total: schedule.length });
      }
    });

    // 4. decode latents / scaling_factor in the VAE's dtype
    const decoded = await hooks.stage('decode', async () => {
      hooks.progress({ stage: 'decode', done: 0, total: 1 });
      const vaeIn = hold(cast(axpby(1 / vae.config.scalingFactor, latents), vae.dtype));
      const image = hold(hooks.network('vae decode', () => vae.decode(vaeIn))); // (B, 3, H, W)
      const data = await image.read();
      hooks.progress({ stage: 'decode', done: 1, total: 1 });
      return data;
    });
    if (!input.returnTensors) return { decoded, tensors: null };
    const read = async (t: Tensor): Promise<HostTensor> => ({ shape: [...t.shape], data: await t.read() });
    const readBoth = async (e: Embeddings<Tensor>): Promise<Embeddings<HostTensor>> => ({ promptEmbeds: await read(e.promptEmbeds), pooled: await read(e.pooled) });
    return { decoded, tensors: { latents: await read(latents), positive: await readBoth(positive), negative: negative && (await readBoth(negative)) } };
  } finally {
    for (const t of owned) t.release();
    latents?.release();
    await gpu.sync().catch(() => {});
  }
}

/**
 * encode_prompt: concat(te1, te2 penultimate states) and te2's text_embeds, for the prompts and,
 * with guidance, the negative prompts (each batch encoded on its own, as diffusers does) or
 * zeros like the positive ones. `made`: the tensors the generation owns (not the cache's).
 */
async function encodePrompts(
  networks: Networks,
  input: GenerationInput,
  hooks: GenerationHooks,
): Promise<{ positive: Embeddings<Tensor>; negative: Embeddings<Tensor> | null; made: Tensor[] }> {
  // Loaded on the first miss only: a generation whose prompts are all cached needs no encoder.
  let encoders: TextEncoders | undefined;
  const encode = async (ids: readonly [Int32Array, Int32Array]): Promise<Embeddings<Tensor>> => {
    const { te1, te2 } = (encoders ??= await networks.textEncoders());
    return tidy(() => {
      const o1 = hooks.network('text_encoder', () => te1.forward(ids[0]));
      const o2 = hooks.network('text_encoder_2', () => te2.forward(ids[1]));
      return { promptEmbeds: concat([o1.penultimate, o2.penultimate], 2), pooled: o2.textEmbeds }; // (B, 77, 2048), (B, 1280)
    });
  };
  const made: Tensor[] = [];
  const own = (e: Embeddings<Tensor>): Embeddings<Tensor> => (made.push(e.promptEmbeds, e.pooled), e);
  const embed = async (ids: readonly [Int32Array, Int32Array]): Promise<Embeddings<Tensor>> =>
    hooks.promptCache ? hooks.promptCache.embeddings(ids, () => encode(ids)) : own(await encode(ids));
  const zerosLike = (t: Tensor): Tensor => {
    const z = Tensor.empty(t.gpu, t.shape, t.dtype, 'zero negative');
    z.fill(0);
    return z;
  };
  const positive = await embed(input.ids);
  const { guidance } = input;
  const negative = !guidance
    ? null
    : guidance.negativeIds
      ? await embed(guidance.negativeIds)
      : own({ promptEmbeds: zerosLike(positive.promptEmbeds), pooled: zerosLike(positive.pooled) });
  if (encoders) await networks.promptsEncoded();
  return { positive, negative, made };
}

/** One denoising step's inputs: the tensors written per step and every other value the step
 *  reads (a replay records afresh when one of them changes). */
interface StepInputs {
  /** (B, 4, h, w) f32. */
  readonly latents: Tensor;
  /** Euler-A's noise for this step (B, 4, h, w) f32; null for plain Euler. */
  readonly noise: Tensor | null;
  /** eulerCoefficients of this step, (3) f32. */
  readonly coefficients: Tensor;
  /** The UNet's inputs but the sample. */
  readonly unet: Omit<UNetInputs, 'sample'>;
  /** The UNet's compute dtype. */
  readonly dtype: DType;
  readonly guidance: { readonly scale: number; readonly batch: number } | null;
}

/** scale_model_input, the UNet (with guidance on the doubled batch), and the Euler step. */
function denoiseStep(unet: UNet2DConditionModel, x: StepInputs, hooks: GenerationHooks): Tensor {
  return tidy(() => {
    const scaled = cast(scaleModelInput(x.latents, x.coefficients), x.dtype); // (B, 4, h, w)
    const sample = x.guidance ? concat([scaled, scaled], 0) : scaled; // (B or 2B, 4, h, w)
    const out = cast(hooks.network('unet', () => unet.forward({ ...x.unet, sample })), 'f32');
    const eps = x.guidance ? guide(out, x.guidance.scale, x.guidance.batch) : out; // (B, 4, h, w)
    // x' = x + ε·(σ_down − σ) + noise·σ_up
    return eulerStep(x.latents, eps, x.noise, x.coefficients); // (B, 4, h, w) f32
  });
}

/** ε = ε_neg + g·(ε_pos − ε_neg) from the UNet's [negative, positive] output (2B, 4, h, w) f32. */
function guide(out: Tensor, scale: number, batch: number): Tensor {
  const [, , h, w] = out.shape as [number, number, number, number];
  const half = (image: number): Tensor => cropSpatial(out, { image, images: batch, y: 0, x: 0, h, w });
  const uncond = half(0);
  return axpby(1, uncond, scale, axpby(1, half(batch), -1, uncond)); // (B, 4, h, w)
}

/** VAE-encoded image latents with add_noise at the first kept timestep: (B, 4, h, w) f32. */
function imageLatents(gpu: Gpu, vae: AutoencoderKL, image: Float32Array, input: GenerationInput, hooks: GenerationHooks): Tensor {
  return tidy(() => {
    const posterior = tidy(() => {
      // The upload inside the forward: the encode's memory counts the image it makes.
      const { mean, logvar, std } = hooks.network('vae encode', () => vae.encode(uploadAs(gpu, image, 'f32', [1, 3, input.height, input.width], vae.dtype, { label: 'input image' }))); // (1, 4, h, w) each
      return { mean: cast(mean, 'f32'), logvar: cast(logvar, 'f32'), std: cast(std, 'f32') }; // sampled in f32
    });
    // latent_dist.sample(): one image, one draw; the batch repeats the sampled latents.
    const posteriorNoise = Tensor.upload(gpu, hooks.draw('posterior_noise', [...posterior.mean.shape]), 'f32', posterior.mean.shape, 'f32');
    const sample = axpby(vae.config.scalingFactor, samplePosterior(posterior, posteriorNoise)); // (1, 4, h, w)
    const repeated = input.batch === 1 ? sample : concat(Array<Tensor>(input.batch).fill(sample), 0); // (B, 4, h, w)
    const noise = Tensor.upload(gpu, hooks.draw('add_noise_noise', [...repeated.shape]), 'f32', repeated.shape, 'f32');
    return axpby(1, repeated, input.schedule.sigmas[0]!, noise); // (B, 4, h, w)
  });
}
