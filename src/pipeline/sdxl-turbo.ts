// The SDXL-Turbo pipeline as diffusers' StableDiffusionXL(Img2Img)Pipeline runs it:
// add_time_ids = (original size, crop (0, 0), target size), Euler or Euler-ancestral steps,
// classifier-free guidance when guidanceScale > 1 (default 0: off, as SDXL-Turbo runs), VAE
// decode of latents / scaling_factor. The generation
// itself is generation.ts's, shared with the dry run; this class loads the networks, checks a
// run by its dry run first, and draws from one torch-compatible CPU generator in diffusers'
// order (`inputs` may supply any draw): every draw the dry run lists, while the GPU encodes the
// prompts.

import { asUsage, GpuError, NonFiniteError, usage } from '../errors.js';
import { dropReplays } from '../gpu/replay.js';
import { type Gpu, WebGpuRuntime } from '../gpu/runtime.js';
import { GeneratedImage, imageToTensorData, resizeLanczos, type RgbImage, tensorDataToImages } from '../image.js';
import type { ModelComponent, ModelFolder } from '../io/model-folder.js';
import { diffusersUnetModuleToSgm } from '../io/sgm-names.js';
import { entryBytes, type TensorSource } from '../io/tensor-source.js';
import { type CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig } from '../models/clip.js';
import { parseUNetConfig, UNet2DConditionModel } from '../models/unet.js';
import { AutoencoderKL, parseVaeConfig, vaeDtype } from '../models/vae.js';
import { LORA_TARGETS, type LoraModel, type LoraOpener, type LoraOption, Loras, type LoraTarget, openLoraSource } from '../models/lora.js';
import { checkAgainst, describeMismatch, type WeightRegistry } from '../models/weights.js';
import type { DType } from '../tensor.js';
import {
  checkWeightsOption,
  type ComputeDType,
  type GenerateOptions,
  type ImageToImageOptions,
  type PipelineOptions,
  resolveGenerate,
  schedulerOverrides,
  type ResolvedGenerate,
  type Stage,
  type WeightFormat,
} from './options.js';
import { type MemoryChoice, planBudget, type Residency } from './budget.js';
import { type DryRun, type RunShape, shapeInput } from './dry-run.js';
import { type Guidance, runGeneration, type GenerationInput, type Networks, type PromptCache } from './generation.js';
import { LiveSession, type LiveOptions } from './live.js';
import { checkInputs, checkLimits, folderConfigs } from './preflight.js';
import { TorchGenerator } from './rng.js';
import { EulerScheduler, parseSchedulerConfig } from './scheduler.js';
import { CLIPTokenizer } from './tokenizer.js';

/** What run() computes; generate() and imageToImage() shape it into a GenerateResult. */
interface RunOutput {
  readonly images: RgbImage[];
  readonly seed: number | bigint;
  /** Wall-clock milliseconds per stage of this call. */
  readonly timings: Partial<Record<Stage, number>>;
  /** With `returnTensors`: final_latents, image (float, [0, 1]), prompt_embeds,
   *  pooled_prompt_embeds, and with guidance negative_prompt_embeds, negative_pooled_prompt_embeds. */
  readonly tensors?: Map<string, { shape: number[]; data: Float32Array }>;
}

export interface GenerateResult<Png = Uint8Array> extends Omit<RunOutput, 'images'> {
  /** One per batch row, prompt by prompt: RGB pixels, rgba() and png(). */
  readonly images: Array<GeneratedImage<Png>>;
}

/** The models built from a folder's configs, their weight tables checked: no GPU needed. */
export interface PreparedModel {
  readonly tokenizers: readonly [CLIPTokenizer, CLIPTokenizer];
  readonly scheduler: EulerScheduler;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  readonly encoders: ReturnType<typeof createEncoders>;
  /** model_index.json's force_zeros_for_empty_prompt: guidance without a negative prompt
   *  uses zero negative embeddings (else those of ""). */
  readonly forceZerosForEmptyPrompt: boolean;
  /** How the UNet's and text encoders' Linear and conv weights are stored (weightFormat()). */
  readonly weights: WeightFormat;
}

/** How loadPipeline completes a load: the model's name for PNG metadata, the platform's PNG
 *  type, and the model it already prepared. */
export interface LoadContext<Png> {
  readonly model: string;
  readonly wrapPng: (bytes: Uint8Array) => Png;
  readonly prepared?: PreparedModel;
  /** The run's memory plan as --verbose prints it. */
  readonly plan?: string;
  /** The LoRAs of `options.loras`, already opened and checked (loadPipeline does it before
   *  the GPU opens); the pipeline owns them. */
  readonly loras?: Loras;
  /** Opens LoRA sources for load() and setLoras() (default: Blobs and URLs only). */
  readonly openLora?: LoraOpener;
  /** The run whose pipelines load() compiles (loadPipeline's preflight); default DEFAULT_RUN. */
  readonly run?: RunShape;
}

/** The run load() compiles the pipelines of when no preflight names one: 512², one step. */
export const DEFAULT_RUN: RunShape = { width: 512, height: 512, batch: 1, steps: 1, imageToImage: false };

/** The component being loaded and the bytes read of all four networks. */
interface LoadTally {
  done: number;
  readonly total: number;
}

interface Encoders {
  readonly te1: CLIPTextModel;
  readonly te2: CLIPTextModelWithProjection;
  readonly registries: WeightRegistry[];
}

class AbortError extends Error {
  override readonly name = 'AbortError';
}

export class SdxlTurboPipeline<Png = Uint8Array> {
  private encoders: Encoders | null = null;
  /** Dry runs by shape, with the budget's choice when maxMemory is set (see preflight). */
  private readonly preflights = new Map<string, { dry: DryRun; choice: MemoryChoice | null }>();
  /** Whether the UNet's weights are on the GPU (a budget may release it while encoding). */
  private unetLoaded = false;
  /** load(): `load` its whole time, `compile` the part compiling the run's pipelines. */
  readonly loadTimings: Partial<Record<Stage, number>> = {};
  /** Set while load() runs, for its progress events. */
  private loadTally: LoadTally | null = null;
  private disposed = false;
  /** The LoRAs merged into the weights (their files stay open: released encoders reload merged). */
  private loras = Loras.none;
  /** 'q8': the UNet's and text encoders' Linear and conv weights are 8-bit. */
  private weights: WeightFormat = 'float';

  private constructor(
    readonly gpu: Gpu,
    readonly folder: ModelFolder,
    /** Compute dtype of the text encoders and the UNet. */
    readonly dtype: DType,
    private readonly tokenizers: readonly [CLIPTokenizer, CLIPTokenizer],
    private readonly scheduler: EulerScheduler,
    private readonly forceZerosForEmptyPrompt: boolean,
    private readonly unet: UNet2DConditionModel,
    private readonly vae: AutoencoderKL,
    private readonly options: PipelineOptions,
    private readonly ownsGpu: boolean,
    private readonly context: LoadContext<Png>,
  ) {}

  /**
   * Loads every network onto `gpu`; with `ownsGpu`, dispose() also destroys the device, and a
   * failed load disposes it. loadPipeline() is the usual way in: it opens the source and the
   * device and checks the run first.
   */
  static async load(gpu: Gpu, folder: ModelFolder, options?: PipelineOptions, ownsGpu?: boolean): Promise<SdxlTurboPipeline>;
  static async load<Png>(gpu: Gpu, folder: ModelFolder, options: PipelineOptions, ownsGpu: boolean, context: LoadContext<Png>): Promise<SdxlTurboPipeline<Png>>;
  static async load(
    gpu: Gpu,
    folder: ModelFolder,
    options: PipelineOptions = {},
    ownsGpu = false,
    context: LoadContext<unknown> = { model: folder.description, wrapPng: (bytes) => bytes },
  ): Promise<SdxlTurboPipeline<unknown>> {
    let dtype: DType;
    let prepared: PreparedModel;
    try {
      dtype = pickDtype(gpu, options.dtype);
      prepared = context.prepared ?? (await prepareModel(folder, options));
    } catch (e) {
      if (ownsGpu) {
        gpu.dispose();
        await folder.close();
      }
      throw e;
    }
    const { tokenizers, scheduler, forceZerosForEmptyPrompt, unet, vae, encoders } = prepared;
    const pipeline = new SdxlTurboPipeline(gpu, folder, dtype, tokenizers, scheduler, forceZerosForEmptyPrompt, unet, vae, options, ownsGpu, context);
    pipeline.weights = prepared.weights;
    try {
      pipeline.loras = context.loras ?? (await Loras.open(options.loras, loraModel(prepared), context.openLora ?? openLoraSource));
    } catch (e) {
      await pipeline.dispose();
      throw e;
    }
    try {
      const started = performance.now();
      // A budget's plan for the run to come says what to upload: without the UNet when the plan
      // never holds it beside the encoders (it loads after encoding).
      const run = context.run ?? DEFAULT_RUN;
      const memory = options.maxMemory === undefined ? null : (await pipeline.preflight(shapeInput(folderConfigs(folder), { ...run, weights: pipeline.weights }, dtype))).choice;
      const withUnet = memory?.residency !== 'sequential';
      const registries = [encoders.te1.registry, encoders.te2.registry, ...(withUnet ? [unet.registry] : []), vae.registry];
      pipeline.loadTally = { done: 0, total: registries.reduce((sum, r) => sum + weightBytes(r, folder.weights(r.component as ModelComponent)), 0) };
      await pipeline.loadEncoders(encoders);
      if (withUnet) await pipeline.loadUnet();
      // The SDXL VAE overflows in f16 (force_upcast): it runs in f32 unless its config says otherwise.
      await pipeline.loadWeights(vae.registry, 'vae', vaeDtype(vae.config, dtype));
      // Every pipeline of the run to come, compiled now (asynchronously, in parallel), so the
      // first generation does not stall compiling them one by one at their first dispatch.
      await pipeline.compileFor(context.run ?? DEFAULT_RUN, context.run === undefined);
      options.signal?.throwIfAborted(); // compiling is a long step
      // Asked for: the named run once now, so the first generation costs what a later one does.
      if (context.run && options.warmUp === true) await pipeline.warmUp(context.run);
      await gpu.sync();
      pipeline.loadTimings.load = performance.now() - started;
    } catch (e) {
      await pipeline.dispose();
      throw e;
    } finally {
      pipeline.loadTally = null;
    }
    return pipeline;
  }

  /**
   * Replaces the merged LoRAs (`[]`: none) without loading the model again: only the weights
   * either set changes are read again from the model's files and merged afresh, so the result is
   * exactly what a load with `loras` gives (an f16 weight with a LoRA subtracted would not be:
   * each merge rounds). Keeping f32 copies of the targeted weights instead would cost twice the
   * f16 model's memory for them (an SDXL UNet's attention and feed-forward weights are most of
   * its 5 GB). A bad LoRA rejects with a UsageError (option `loras`) before any weight changes.
   */
  async setLoras(loras: ReadonlyArray<LoraOption>): Promise<void> {
    if (this.disposed) usage('setLoras() after dispose(): this pipeline\'s GPU memory is freed; load another with loadPipeline()');
    const model = loraModel({ unet: this.unet, encoders: this.encoders ?? createEncoders(this.folder) });
    const next = await Loras.open(loras, model, this.context.openLora ?? openLoraSource);
    const previous = this.loras;
    this.loras = next;
    try {
      await this.reloadLoraTargets(previous, next);
    } finally {
      await previous.close();
    }
  }

  /** Uploads again, merged with `next`, every loaded weight that `previous` or `next` changes. */
  private async reloadLoraTargets(previous: Loras, next: Loras): Promise<void> {
    const registries: Record<LoraTarget, WeightRegistry | undefined> = {
      text_encoder: this.encoders?.te1.registry,
      text_encoder_2: this.encoders?.te2.registry,
      unet: this.unetLoaded ? this.unet.registry : undefined,
    };
    for (const target of LORA_TARGETS) {
      const registry = registries[target];
      // Released networks load with the new LoRAs when next needed.
      if (registry) await this.loadWeights(registry, target, this.dtype, new Set([...previous.names(target), ...next.names(target)]));
    }
    await this.gpu.sync();
  }

  /** Lines for --verbose: adapter, precision, weight files, the memory plan of loadPipeline's preflight. */
  describe(): string[] {
    return [
      `adapter: ${this.gpu.adapterName} (shader-f16: ${this.gpu.f16 ? 'yes' : 'no'}, max binding ${this.gpu.limits.maxStorageBufferBindingSize} B)`,
      ...(this.gpu.subgroupMatrix?.report ?? []),
      `compute: ${this.dtype} (text encoders, UNet${this.weights === 'q8' ? '; their Linear and conv weights 8-bit' : ''}), ${this.vae.dtype} (VAE)`,
      ...(['text_encoder', 'text_encoder_2', 'unet', 'vae'] as const).map((c) => `weights: ${this.folder.weightFile(c)}`),
      ...this.loras.describe(),
      `kernel variants: ${this.gpu.tuning.size > 0 ? `${this.gpu.tuning.size} stored choice(s) of sdxl-turbo tune, built-in elsewhere` : 'built-in choices (no tuning table used)'}`,
      `loaded in ${(this.loadTimings.load ?? 0).toFixed(0)} ms (compiling pipelines ${(this.loadTimings.compile ?? 0).toFixed(0)} ms of it)`,
      ...(this.context.plan === undefined ? [] : [this.context.plan]),
    ];
  }

  async kernelTimings(): Promise<Array<{ kernel: string; calls: number; totalMs: number }>> {
    return this.gpu.profiler ? this.gpu.profiler.report() : [];
  }

  /** Text-to-image. Rejects with a UsageError naming a bad option, with `signal.reason` when
   *  aborted, with a GpuError when the device fails. */
  generate(options: GenerateOptions): Promise<GenerateResult<Png>> {
    return this.call(options, false);
  }

  /** Image-to-image from `options.image` (RGB, e.g. a previous result's image). */
  imageToImage(options: ImageToImageOptions): Promise<GenerateResult<Png>> {
    return this.call(options, true);
  }

  /** false once dispose() ran or the device was lost: generate() and the other calls then reject. */
  get usable(): boolean {
    return !this.disposed && !this.gpu.lost;
  }

  /**
   * A live session (live.ts): frames of `options`' size and seed that follow the newest
   * update(), the running frame cancelled at a stage boundary by a newer request, the prompts'
   * embeddings cached. Throws a UsageError naming a bad option.
   */
  live(options: LiveOptions = {}): LiveSession<Png> {
    if (this.disposed) usage('live() after dispose(): this pipeline\'s GPU memory is freed; load another with loadPipeline()');
    return new LiveSession<Png>(options, {
      run: (o, cache) => this.call(o, 'image' in o, cache),
      compile: async (shape) => {
        const { dry } = await this.preflight(shapeInput(folderConfigs(this.folder), { ...shape, weights: this.weights }, this.dtype));
        await this.gpu.compile(dry.specializations);
      },
      // setLoras replaces the Loras object along with the encoders' merged weights.
      encoderWeights: () => this.loras,
    });
  }

  private async call(options: GenerateOptions | ImageToImageOptions, imageToImage: boolean, promptCache?: PromptCache): Promise<GenerateResult<Png>> {
    const name = imageToImage ? 'imageToImage' : 'generate';
    if (this.disposed) usage(`${name}() after dispose(): this pipeline's GPU memory is freed; load another with loadPipeline()`);
    if (this.gpu.lost) throw this.lostError(`${name}() after`);
    const run = resolveGenerate(options, imageToImage);
    options.signal?.throwIfAborted();
    let out: RunOutput;
    try {
      out = await this.run(run, options, imageToImage ? { image: (options as ImageToImageOptions).image, strength: run.strength! } : null, promptCache);
    } catch (e) {
      // As fetch rejects: with the signal's reason, whatever stage noticed the abort.
      if (options.signal?.aborted) throw options.signal.reason;
      if (this.gpu.lost) throw this.lostError(`${name}() failed:`, e);
      throw e;
    }
    // Aborts are noticed between stages and steps; one during the last stage still rejects.
    options.signal?.throwIfAborted();
    const images = out.images.map((image, i) => {
      const row = Math.floor(i / run.imagesPerPrompt);
      const parameters = {
        prompt: run.prompts[row]!,
        seed: out.seed,
        steps: run.steps,
        ...(run.strength === null ? {} : { strength: run.strength }),
        guidanceScale: run.guidanceScale,
        ...(run.guidance && run.negativePrompts ? { negativePrompt: run.negativePrompts[row]! } : {}),
        scheduler: this.scheduler.config.scheduler,
        width: image.width,
        height: image.height,
        model: this.context.model,
        batchIndex: i,
        batchSize: out.images.length,
      };
      return new GeneratedImage(image.width, image.height, image.data, parameters, this.context.wrapPng);
    });
    return { ...out, images };
  }

  /** The error of a call that found (or met) the device lost. */
  private lostError(what: string, cause?: unknown): GpuError {
    const lost = this.gpu.lost!;
    return new GpuError(`${what} ${lost.message}: this pipeline cannot run again; dispose() it and load another with loadPipeline()`, { cause: cause ?? lost });
  }

  private async run(run: ResolvedGenerate, options: GenerateOptions, i2i: { image: RgbImage; strength: number } | null, promptCache?: PromptCache): Promise<RunOutput> {
    const { gpu } = this;
    const signal = options.signal;
    const timings: Partial<Record<Stage, number>> = {};
    const batch = run.prompts.length * run.imagesPerPrompt;
    // Each prompt's rows together (prompt_embeds.repeat(1, n, 1) in diffusers), the negative
    // prompts' rows the same way.
    const ids = (prompts: readonly string[]): [Int32Array, Int32Array] => {
      const rows = prompts.flatMap((p) => Array<string>(run.imagesPerPrompt).fill(p));
      return [this.tokenizers[0], this.tokenizers[1]].map((t) => {
        const out = new Int32Array(rows.length * t.maxLength);
        rows.forEach((p, i) => out.set(t.encode(p), i * t.maxLength));
        return out;
      }) as [Int32Array, Int32Array];
    };
    // diffusers' encode_prompt: no negative prompt means zeros with force_zeros_for_empty_prompt, else "".
    const negatives = run.negativePrompts ?? (this.forceZerosForEmptyPrompt ? null : run.prompts.map(() => ''));
    const guidance: Guidance | null = run.guidance ? { scale: run.guidanceScale, negativeIds: negatives && ids(negatives) } : null;
    const input: GenerationInput = {
      width: run.width,
      height: run.height,
      batch,
      ids: ids(run.prompts),
      schedule: i2i ? this.scheduler.img2imgSchedule(run.steps, i2i.strength) : this.scheduler.schedule(run.steps),
      guidance,
      image: i2i ? imageToTensorData(resizeLanczos(i2i.image, run.width, run.height)) : null,
      dtype: this.dtype,
      weights: this.weights,
      returnTensors: options.returnTensors === true,
    };
    // Before any GPU work: this very generation, dry-run against the device and the supplied tensors.
    const { dry, choice } = await this.preflight(input);
    if (options.inputs) checkInputs(dry.draws, options.inputs, 'inputs');
    const residency: Residency = choice?.residency ?? (this.options.releaseEncoders ? 'release-encoders' : 'all');
    this.vae.maxActivationBytes = choice?.decodeLimit ?? null;
    this.vae.maxEncodeActivationBytes = choice?.encodeLimit ?? null;
    // A shape load() did not compile for: its pipelines compile now, in parallel, not one by one
    // at their first dispatch (a no-op when they are all compiled).
    await gpu.compile(dry.specializations);
    const rng = new TorchGenerator(run.seed);
    const checkAborted = (): void => {
      if (signal?.aborted) throw new AbortError('generation cancelled');
    };
    const networks: Networks = {
      textEncoders: async () => {
        if (residency === 'sequential') await this.releaseUnet();
        return this.loadEncoders();
      },
      promptsEncoded: async () => {
        if (residency !== 'all') await this.releaseEncoders();
        await this.loadUnet();
      },
      unet: this.unet,
      vae: this.vae,
    };
    // The dry run's draws, made in its order by drawAhead while the GPU encodes the prompts.
    let drawnAhead: Map<string, Float32Array> | null = null;
    const generation = runGeneration(gpu, networks, input, {
      draw: (name, shape) => {
        const supplied = options.inputs?.get(name);
        // Draw even when supplied, so later draws stay where the seed would put them.
        const drawn = drawnAhead ? drawnAhead.get(name) : rng.randn(shape);
        if (!drawn) throw new Error(`generation: the random tensor ${name} is not among the dry run's draws (${dry.draws.map((d) => d.name).join(', ')})`);
        return supplied ?? drawn;
      },
      drawAhead: () => {
        drawnAhead = new Map(dry.draws.map((d) => [d.name, rng.randn(d.shape)]));
      },
      stage: async (name, body) => {
        checkAborted();
        // The budget's plan has each stage start from an empty pool: the last generation's
        // tensors went back to it after its last stage.
        if (choice && gpu.pool.stats.pooledBytes > 0) await gpu.releaseIdleMemory();
        // The denoising step's replay (gpu/replay.ts) holds its own buffers from the first step
        // on, beside the pool the budget plans: dropped before a stage that would not fit with it.
        if (choice && gpu instanceof WebGpuRuntime && name !== 'denoise') {
          const stage = choice.stages.find((s) => s.stage === name);
          // What the device holds now (replays, the small tensors carried between stages
          // included) and what the stage adds to it.
          if (stage && gpu.allocated.live + stage.bytes - stage.held > choice.maxMemory) {
            dropReplays(gpu);
            await gpu.releaseIdleMemory(); // their memory freed before the stage allocates
          }
        }
        const t0 = performance.now();
        const result = await body();
        await gpu.sync();
        if (choice) await gpu.releaseIdleMemory();
        timings[name] = (timings[name] ?? 0) + performance.now() - t0;
        return result;
      },
      network: (_, forward) => forward(),
      progress: (e) => options.onProgress?.(e),
      checkAborted,
      ...(promptCache ? { promptCache } : {}),
    });
    // The GPU is idle once runGeneration settles: size classes this run and the previous one
    // did not use are freed (buffer-pool.ts).
    const out = await generation.finally(() => gpu.pool.endGeneration());
    checkFinite(out.decoded, this.dtype);
    const { float, images } = tensorDataToImages(out.decoded, batch, run.height, run.width);
    let tensors: GenerateResult['tensors'];
    if (out.tensors) {
      const { latents, positive, negative } = out.tensors;
      tensors = new Map([
        ['final_latents', latents],
        ['image', { shape: [batch, 3, run.height, run.width], data: float }],
        ['prompt_embeds', positive.promptEmbeds],
        ['pooled_prompt_embeds', positive.pooled],
        ...(negative
          ? ([
              ['negative_prompt_embeds', negative.promptEmbeds],
              ['negative_pooled_prompt_embeds', negative.pooled],
            ] as const)
          : []),
      ]);
    }
    return { images, seed: run.seed, timings, ...(tensors ? { tensors } : {}) };
  }

  /**
   * Compiles (createComputePipelineAsync, in parallel) every pipeline a generation of `run`
   * dispatches, from its dry run; 'compile' progress events count them. `optional`: a run that
   * does not fit the device (the default one, nobody asked for it) compiles nothing.
   */
  private async compileFor(run: RunShape, optional: boolean): Promise<void> {
    let dry: DryRun;
    try {
      ({ dry } = await this.preflight(shapeInput(folderConfigs(this.folder), { ...run, weights: this.weights }, this.dtype)));
    } catch (e) {
      if (optional) return;
      throw e;
    }
    const started = performance.now();
    const onProgress = this.options.onProgress;
    await this.gpu.compile(dry.specializations, onProgress && ((done, total) => onProgress({ stage: 'compile', done, total })));
    this.loadTimings.compile = performance.now() - started;
  }

  /**
   * One generation of `run`'s shapes (empty prompts; image-to-image from a black image), its
   * result dropped: what a first run does beyond a warm one happens here instead — the buffer
   * pool grows to the run's buffers (Dawn clears each new buffer on its first use), the denoising
   * step is recorded for replay (gpu/replay.ts; a guided run's replay is keyed on its guidance
   * scale too, so only a run with this one's, 2, replays it at once), and the JavaScript runs
   * once. The staging buffers of the load's dtype casts are freed first: the run does not need them.
   */
  private async warmUp(run: RunShape): Promise<void> {
    // The load's weights are all read: a network the run loads again (a budget's) is not load progress.
    this.loadTally = null;
    await this.gpu.releaseIdleMemory();
    const { signal } = this.options;
    const options = {
      prompt: Array<string>(run.batch).fill(''),
      width: run.width,
      height: run.height,
      steps: run.steps,
      ...(run.guidance ? { guidanceScale: 2 } : {}),
      ...(signal ? { signal } : {}),
    };
    // strength 1 runs all `steps`: the count a RunShape gives is the steps run.
    const image = { width: run.width, height: run.height, data: new Uint8Array(run.width * run.height * 3) };
    // An overflow of the empty prompt's image says nothing of the prompts to come: the work is done.
    await (run.imageToImage ? this.call({ ...options, strength: 1, image }, true) : this.call(options, false)).catch((e: unknown) => {
      if (!(e instanceof NonFiniteError)) throw e;
    });
  }

  /** The dry run of a generation of `input`'s shapes on this device, checked against its
   *  limits; one per shape, since neither the prompts nor the seed change it. */
  private async preflight(input: GenerationInput): Promise<{ dry: DryRun; choice: MemoryChoice | null }> {
    const guidance = input.guidance ? (input.guidance.negativeIds ? 'negative' : 'zeros') : 'off';
    const key = [input.width, input.height, input.batch, input.schedule.length, input.image !== null, guidance].join();
    let run = this.preflights.get(key);
    if (!run) {
      const device = { limits: this.gpu.limits, f16: this.gpu.f16, subgroups: this.gpu.subgroups, tuning: this.gpu.tuning };
      const { maxMemory, releaseEncoders } = this.options;
      if (maxMemory === undefined) run = { dry: await checkLimits(folderConfigs(this.folder), input, device), choice: null };
      else {
        const { dryRun, choice } = await planBudget(folderConfigs(this.folder), input, device, maxMemory, releaseEncoders ? 'release-encoders' : 'all');
        run = { dry: dryRun, choice };
      }
      this.preflights.set(key, run);
    }
    return run;
  }

  /** The text encoders on the GPU; `created` (models not loaded yet) saves building them again. */
  private async loadEncoders(created?: ReturnType<typeof createEncoders>): Promise<Encoders> {
    if (this.encoders) return this.encoders;
    const { te1, te2 } = created ?? createEncoders(this.folder);
    await this.loadWeights(te1.registry, 'text_encoder', this.dtype);
    await this.loadWeights(te2.registry, 'text_encoder_2', this.dtype);
    this.encoders = { te1, te2, registries: [te1.registry, te2.registry] };
    return this.encoders;
  }

  /** The UNet on the GPU (again, after a budget released it). */
  private async loadUnet(): Promise<void> {
    if (this.unetLoaded) return;
    await this.loadWeights(this.unet.registry, 'unet', this.dtype);
    this.unetLoaded = true;
  }

  private async releaseUnet(): Promise<void> {
    if (!this.unetLoaded) return;
    this.unet.registry.release();
    this.unetLoaded = false;
    await this.gpu.releaseIdleMemory();
  }

  private async releaseEncoders(): Promise<void> {
    if (!this.encoders) return;
    for (const r of this.encoders.registries) r.release();
    this.encoders = null;
    await this.gpu.releaseIdleMemory();
  }

  /** Uploads one network (or only the weights `names`), this pipeline's LoRAs merged; while
   *  load() runs, reports the bytes read of all four. */
  private async loadWeights(registry: WeightRegistry, component: ModelComponent, dtype: DType, names?: ReadonlySet<string>): Promise<void> {
    const source = this.folder.weights(component);
    const { signal, onProgress } = this.options;
    const tally = this.loadTally;
    const count = (bytes: number): void => {
      if (!tally) return;
      tally.done += bytes;
      onProgress?.({ stage: 'load', component, done: tally.done, total: tally.total });
    };
    const counted: TensorSource = {
      description: source.description,
      entries: source.entries,
      read: async (name) => {
        signal?.throwIfAborted();
        const host = await source.read(name);
        count(host.data.byteLength);
        return host;
      },
    };
    const readQ8 = source.readQ8?.bind(source);
    if (readQ8) {
      counted.readQ8 = async (name) => {
        signal?.throwIfAborted();
        const q = await readQ8(name);
        count(q.values.byteLength + q.scales.byteLength);
        return q;
      };
    }
    const create = source.create?.bind(source);
    if (create) {
      counted.create = (gpu, name, dtype, label) => {
        signal?.throwIfAborted();
        const t = create(gpu, name, dtype, label);
        count(entryBytes(source.entries.get(name)!));
        return t;
      };
    }
    if (tally) onProgress?.({ stage: 'load', component, done: tally.done, total: tally.total });
    const merges = component === 'vae' ? undefined : this.loras.merges(this.gpu, component);
    const quantize = this.weights === 'q8' && component !== 'vae';
    if (names) await registry.reload(this.gpu, counted, dtype, names, { merges, quantize });
    else await registry.load(this.gpu, counted, dtype, { merges, quantize });
    // The merges' f32 temporaries (up to a whole weight each) must not stay pooled beside the model.
    if (merges?.size) await this.gpu.releaseIdleMemory();
  }

  /** Frees every GPU buffer (and the device if the pipeline owns it); calling it again does nothing. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.releaseEncoders();
    this.unet.registry.release();
    this.vae.registry.release();
    await this.loras.close();
    await this.folder.close();
    if (this.ownsGpu) this.gpu.dispose();
  }
}

/**
 * Everything that can be checked before a GPU is opened: the scheduler options, tokenizers,
 * scheduler and model configs (a folder of another model family fails here), and every
 * network's weight table against its declaration.
 */
export async function prepareModel(folder: ModelFolder, options: Pick<PipelineOptions, 'scheduler' | 'timestepSpacing' | 'weights'> = {}): Promise<PreparedModel> {
  const where = folder.description;
  const overrides = schedulerOverrides(options);
  const weights = weightFormat(folder, options.weights);
  const forceZeros = folder.index.force_zeros_for_empty_prompt ?? true; // the pipeline's default
  if (typeof forceZeros !== 'boolean') usage(`${where}/model_index.json: "force_zeros_for_empty_prompt" is ${JSON.stringify(forceZeros)}, expected true or false`);
  // Every config against its bounds (config-bounds.ts) before anything is built from one.
  const configs = await asUsage(() => ({
    scheduler: parseSchedulerConfig(folder.config('scheduler'), `${where}/scheduler/scheduler_config.json`, overrides),
    unet: parseUNetConfig(folder.config('unet'), `${where}/unet/config.json`),
    vae: parseVaeConfig(folder.config('vae'), `${where}/vae/config.json`),
    textEncoders: (['text_encoder', 'text_encoder_2'] as const).map((e) => parseCLIPTextConfig(folder.config(e), `${where}/${e}/config.json`)),
  }));
  const tokenizers = await asUsage(loadTokenizers((path) => folder.readText(path), where));
  checkSequenceLengths(folder, tokenizers, configs.textEncoders);
  const scheduler = new EulerScheduler(configs.scheduler);
  const unet = UNet2DConditionModel.create(configs.unet);
  const vae = AutoencoderKL.create(configs.vae);
  const encoders = createEncoders(folder);
  checkWeights(folder, [
    ['text_encoder', encoders.te1.registry],
    ['text_encoder_2', encoders.te2.registry],
    ['unet', unet.registry],
    ['vae', vae.registry],
  ]);
  return { tokenizers, scheduler, unet, vae, encoders, forceZerosForEmptyPrompt: forceZeros, weights };
}

/** 'q8' when asked (`weights` option) or when the folder's networks are 8-bit already (a
 *  `sdxl-turbo quantize` folder: all three or none, never the VAE). */
export function weightFormat(folder: ModelFolder, asked: unknown): WeightFormat {
  checkWeightsOption(asked);
  const networks = ['text_encoder', 'text_encoder_2', 'unet'] as const;
  const quantized = networks.filter((c) => folder.quantized(c));
  if (quantized.length > 0 && quantized.length < networks.length) {
    usage(`${folder.description}: ${quantized.join(', ')} ${quantized.length > 1 ? 'are' : 'is'} 8-bit but ${networks.filter((c) => !quantized.includes(c)).join(', ')} not; a quantized folder has all three 8-bit (sdxl-turbo quantize)`);
  }
  if (folder.quantized('vae')) usage(`${folder.description}/vae/config.json: "quantization" is not supported for the VAE (it runs in f32)`);
  return asked === 'q8' || quantized.length > 0 ? 'q8' : 'float';
}

/** What LoRAs are matched against: the declared weights of the UNet and both text encoders. */
export function loraModel(prepared: Pick<PreparedModel, 'unet' | 'encoders'>): LoraModel {
  return {
    weights: {
      text_encoder: prepared.encoders.te1.registry.expected(),
      text_encoder_2: prepared.encoders.te2.registry.expected(),
      unet: prepared.unet.registry.expected(),
    },
    unetAlias: diffusersUnetModuleToSgm(prepared.unet.config),
  };
}

/** A decoded image with any NaN or ±Inf is refused rather than written as a flat or speckled PNG. */
function checkFinite(decoded: Float32Array, dtype: DType): void {
  let bad = 0;
  for (const v of decoded) if (!Number.isFinite(v)) bad++;
  if (bad === 0) return;
  const hint = dtype === 'f16' ? ' (try dtype f32)' : '';
  throw new NonFiniteError(`the generation overflowed: ${bad} of ${decoded.length} values of the decoded image are NaN or ±Inf, from finite weights${hint}; no image was made`);
}

/** Bytes of the tensors a model reads from its source. */
function weightBytes(registry: WeightRegistry, source: TensorSource): number {
  let bytes = 0;
  for (const name of registry.weights.keys()) bytes += entryBytes(source.entries.get(name)!);
  return bytes;
}

/** Each tokenizer's model_max_length fits its text encoder's position table. */
function checkSequenceLengths(folder: ModelFolder, tokenizers: readonly [CLIPTokenizer, CLIPTokenizer], encoders: readonly CLIPTextConfig[]): void {
  (['text_encoder', 'text_encoder_2'] as const).forEach((encoder, i) => {
    const file = `${folder.description}/${encoder}/config.json`;
    const positions = encoders[i]!.maxPositionEmbeddings;
    const tokenizer = `tokenizer${i === 0 ? '' : '_2'}`;
    if (tokenizers[i]!.maxLength > positions) {
      usage(`${folder.description}/${tokenizer}/tokenizer_config.json: model_max_length ${tokenizers[i]!.maxLength} is above ${file}'s max_position_embeddings ${positions}`);
    }
  });
}

/** Both text encoders built from their configs (weights declared, not loaded). */
function createEncoders(folder: ModelFolder): { te1: ReturnType<typeof CLIPTextModel.create>; te2: ReturnType<typeof CLIPTextModelWithProjection.create> } {
  const where = folder.description;
  return {
    te1: CLIPTextModel.create(parseCLIPTextConfig(folder.config('text_encoder'), `${where}/text_encoder/config.json`)),
    te2: CLIPTextModelWithProjection.create(parseCLIPTextConfig(folder.config('text_encoder_2'), `${where}/text_encoder_2/config.json`)),
  };
}

/** Every model's weight file against its declaration before anything is uploaded, one line
 *  per mismatched model (describeMismatch). */
function checkWeights(folder: ModelFolder, registries: ReadonlyArray<[ModelComponent, WeightRegistry]>): void {
  const reports: string[] = [];
  for (const [component, registry] of registries) {
    const source = folder.weights(component);
    const problems = checkAgainst(registry.expected(), source, registry.tolerated, registry.quantizable());
    if (problems.length > 0) reports.push(describeMismatch(component, source, problems));
  }
  if (reports.length > 0) usage(reports.join('; '));
}

export function pickDtype(gpu: Gpu, asked: ComputeDType | undefined): DType {
  if (asked === 'f16' && !gpu.f16) usage(`dtype f16 needs the shader-f16 feature, which this adapter (${gpu.adapterName}) lacks; use f32`, 'dtype');
  return asked ?? (gpu.f16 ? 'f16' : 'f32');
}

/** Both SDXL tokenizers from a folder's files (`read` gives a file's text or throws). */
export async function loadTokenizers(read: (path: string) => Promise<string>, where: string): Promise<readonly [CLIPTokenizer, CLIPTokenizer]> {
  const one = async (name: string): Promise<CLIPTokenizer> =>
    new CLIPTokenizer(
      {
        vocab: await read(`${name}/vocab.json`),
        merges: await read(`${name}/merges.txt`),
        tokenizerConfig: await read(`${name}/tokenizer_config.json`),
        specialTokensMap: await read(`${name}/special_tokens_map.json`),
      },
      `${where}/${name}`,
    );
  return [await one('tokenizer'), await one('tokenizer_2')];
}
