// The SDXL-Turbo pipeline as diffusers' StableDiffusionXL(Img2Img)Pipeline runs it with
// guidance_scale 0: no unconditional branch, add_time_ids = (original size, crop (0, 0),
// target size), Euler-ancestral steps, VAE decode of latents / scaling_factor. The generation
// itself is generation.ts's, shared with the dry run; this class loads the networks, checks a
// run by its dry run first, and draws from one torch-compatible CPU generator in diffusers'
// order (`inputs` may supply any draw).

import { asUsage, usage } from '../errors.js';
import type { Gpu } from '../gpu/runtime.js';
import { imageToTensorData, resizeLanczos, type RgbImage, tensorDataToImages } from '../image.js';
import type { ModelComponent, ModelFolder } from '../io/model-folder.js';
import { CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig } from '../models/clip.js';
import { parseUNetConfig, UNet2DConditionModel } from '../models/unet.js';
import { AutoencoderKL, parseVaeConfig } from '../models/vae.js';
import { checkAgainst, type WeightRegistry } from '../models/weights.js';
import type { DType } from '../tensor.js';
import {
  checkImage,
  checkStrength,
  type ComputeDType,
  imageDefaultSize,
  img2imgSteps,
  type GenerateOptions,
  type ImageToImageOptions,
  type PipelineOptions,
  resolveGenerate,
  type ResolvedGenerate,
  type Stage,
} from './options.js';
import type { DryRun } from './dry-run.js';
import { runGeneration, type GenerationInput, type Networks } from './generation.js';
import { checkInputs, checkLimits, folderConfigs } from './preflight.js';
import { TorchGenerator } from './rng.js';
import { EulerAncestralDiscreteScheduler } from './scheduler.js';
import { CLIPTokenizer } from './tokenizer.js';

export interface GenerateResult {
  readonly images: RgbImage[];
  readonly seed: number;
  /** Wall-clock milliseconds per stage of this call. */
  readonly timings: Partial<Record<Stage, number>>;
  /** With `returnTensors`: final_latents, image (float, [0, 1]), prompt_embeds, pooled_prompt_embeds. */
  readonly tensors?: Map<string, { shape: number[]; data: Float32Array }>;
}

interface Encoders {
  readonly te1: CLIPTextModel;
  readonly te2: CLIPTextModelWithProjection;
  readonly registries: WeightRegistry[];
}

class AbortError extends Error {
  override readonly name = 'AbortError';
}

export class SdxlTurboPipeline {
  private encoders: Encoders | null = null;
  /** Dry runs by shape (see preflight). */
  private readonly preflights = new Map<string, DryRun>();
  private readonly loadTimings: Partial<Record<Stage, number>> = {};

  private constructor(
    readonly gpu: Gpu,
    readonly folder: ModelFolder,
    /** Compute dtype of the text encoders and the UNet. */
    readonly dtype: DType,
    private readonly tokenizers: readonly [CLIPTokenizer, CLIPTokenizer],
    private readonly scheduler: EulerAncestralDiscreteScheduler,
    private readonly unet: UNet2DConditionModel,
    private readonly vae: AutoencoderKL,
    private readonly options: PipelineOptions,
    private readonly ownsGpu: boolean,
  ) {}

  /** Loads every network onto `gpu`; with `ownsGpu`, dispose() also destroys the device. */
  static async load(gpu: Gpu, folder: ModelFolder, options: PipelineOptions = {}, ownsGpu = false): Promise<SdxlTurboPipeline> {
    const dtype = pickDtype(gpu, options.dtype);
    // A folder of another model family fails here, before any weight is read.
    const where = folder.description;
    const tokenizers = await asUsage(loadTokenizers((path) => folder.readText(path), where));
    const { scheduler, unet, vae } = await asUsage(() => ({
      scheduler: EulerAncestralDiscreteScheduler.fromConfigJson(folder.config('scheduler')),
      unet: UNet2DConditionModel.create(parseUNetConfig(folder.config('unet'), `${where}/unet/config.json`)),
      vae: AutoencoderKL.create(parseVaeConfig(folder.config('vae'), `${where}/vae/config.json`)),
    }));
    const encoders = createEncoders(folder);
    checkWeights(folder, [
      ['text_encoder', encoders.te1.registry],
      ['text_encoder_2', encoders.te2.registry],
      ['unet', unet.registry],
      ['vae', vae.registry],
    ]);
    const pipeline = new SdxlTurboPipeline(gpu, folder, dtype, tokenizers, scheduler, unet, vae, options, ownsGpu);
    const started = performance.now();
    await pipeline.loadEncoders(encoders);
    await pipeline.loadWeights(unet.registry, 'unet', dtype);
    // The SDXL VAE overflows in f16 (force_upcast): it always runs in f32.
    await pipeline.loadWeights(vae.registry, 'vae', 'f32');
    await gpu.sync();
    pipeline.loadTimings.load = performance.now() - started;
    return pipeline;
  }

  /** Lines for --verbose: adapter, precision, weight files. */
  describe(): string[] {
    return [
      `adapter: ${this.gpu.adapterName} (shader-f16: ${this.gpu.f16 ? 'yes' : 'no'}, max binding ${this.gpu.limits.maxStorageBufferBindingSize} B)`,
      `compute: ${this.dtype} (text encoders, UNet), f32 (VAE)`,
      ...(['text_encoder', 'text_encoder_2', 'unet', 'vae'] as const).map((c) => `weights: ${this.folder.weightFile(c)}`),
      `loaded in ${(this.loadTimings.load ?? 0).toFixed(0)} ms`,
    ];
  }

  async kernelTimings(): Promise<Array<{ kernel: string; calls: number; totalMs: number }>> {
    return this.gpu.profiler ? this.gpu.profiler.report() : [];
  }

  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const run = resolveGenerate(options, { width: 512, height: 512 });
    return this.run(run, options, null);
  }

  async imageToImage(options: ImageToImageOptions): Promise<GenerateResult> {
    const image = checkImage(options.image);
    const strength = checkStrength(options.strength ?? 0.5);
    const run = resolveGenerate(options, imageDefaultSize(image));
    img2imgSteps(run.steps, strength);
    return this.run(run, options, { image, strength });
  }

  private async run(run: ResolvedGenerate, options: GenerateOptions, i2i: { image: RgbImage; strength: number } | null): Promise<GenerateResult> {
    const { gpu } = this;
    const signal = options.signal;
    const timings: Partial<Record<Stage, number>> = {};
    const batch = run.prompts.length * run.imagesPerPrompt;
    const rows = run.prompts.flatMap((p) => Array<string>(run.imagesPerPrompt).fill(p));
    const ids = (t: CLIPTokenizer): Int32Array => {
      const out = new Int32Array(rows.length * t.maxLength);
      rows.forEach((p, i) => out.set(t.encode(p), i * t.maxLength));
      return out;
    };
    const input: GenerationInput = {
      width: run.width,
      height: run.height,
      batch,
      ids: [ids(this.tokenizers[0]), ids(this.tokenizers[1])],
      schedule: i2i ? this.scheduler.img2imgSchedule(run.steps, i2i.strength) : this.scheduler.schedule(run.steps),
      image: i2i ? imageToTensorData(resizeLanczos(i2i.image, run.width, run.height)) : null,
      dtype: this.dtype,
      returnTensors: options.returnTensors === true,
    };
    // Before any GPU work: this very generation, dry-run against the device and the supplied tensors.
    const { draws } = await this.preflight(input);
    if (options.inputs) checkInputs(draws, options.inputs, 'inputs');
    const rng = new TorchGenerator(run.seed);
    const checkAborted = (): void => {
      if (signal?.aborted) throw new AbortError('generation cancelled');
    };
    const networks: Networks = {
      textEncoders: () => this.loadEncoders(),
      promptsEncoded: async () => {
        if (this.options.releaseEncoders) await this.releaseEncoders();
      },
      unet: this.unet,
      vae: this.vae,
    };
    const out = await runGeneration(gpu, networks, input, {
      draw: (name, shape) => {
        const supplied = options.inputs?.get(name);
        // Draw even when supplied, so later draws stay where the seed would put them.
        const drawn = rng.randn(shape);
        return supplied ?? drawn;
      },
      stage: async (name, body) => {
        checkAborted();
        const t0 = performance.now();
        const result = await body();
        await gpu.sync();
        timings[name] = (timings[name] ?? 0) + performance.now() - t0;
        return result;
      },
      network: (_, forward) => forward(),
      progress: (e) => options.onProgress?.(e),
      checkAborted,
    });
    const { float, images } = tensorDataToImages(out.decoded, batch, run.height, run.width);
    let tensors: GenerateResult['tensors'];
    if (out.tensors) {
      tensors = new Map([
        ['final_latents', out.tensors.latents],
        ['image', { shape: [batch, 3, run.height, run.width], data: float }],
        ['prompt_embeds', out.tensors.promptEmbeds],
        ['pooled_prompt_embeds', out.tensors.pooled],
      ]);
    }
    return { images, seed: run.seed, timings, ...(tensors ? { tensors } : {}) };
  }

  /** The dry run of a generation of `input`'s shapes on this device, checked against its
   *  limits; one per shape, since neither the prompts nor the seed change it. */
  private async preflight(input: GenerationInput): Promise<DryRun> {
    const key = [input.width, input.height, input.batch, input.schedule.length, input.image !== null].join();
    let run = this.preflights.get(key);
    if (!run) {
      const device = { limits: this.gpu.limits, f16: this.gpu.f16, vaeMaxActivationBytes: this.vae.maxActivationBytes };
      run = await checkLimits(folderConfigs(this.folder), input, device);
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

  private async releaseEncoders(): Promise<void> {
    if (!this.encoders) return;
    for (const r of this.encoders.registries) r.release();
    this.encoders = null;
    await this.gpu.releaseIdleMemory();
  }

  private async loadWeights(registry: WeightRegistry, component: 'text_encoder' | 'text_encoder_2' | 'unet' | 'vae', dtype: DType): Promise<void> {
    await registry.load(this.gpu, this.folder.weights(component), dtype, (done, total) =>
      this.options.onProgress?.({ stage: 'load', done, total }),
    );
  }

  async dispose(): Promise<void> {
    await this.releaseEncoders();
    this.unet.registry.release();
    this.vae.registry.release();
    await this.folder.close();
    if (this.ownsGpu) this.gpu.dispose();
  }
}

/** Both text encoders built from their configs (weights declared, not loaded). */
function createEncoders(folder: ModelFolder): { te1: ReturnType<typeof CLIPTextModel.create>; te2: ReturnType<typeof CLIPTextModelWithProjection.create> } {
  const where = folder.description;
  return {
    te1: CLIPTextModel.create(parseCLIPTextConfig(folder.config('text_encoder'), `${where}/text_encoder/config.json`)),
    te2: CLIPTextModelWithProjection.create(parseCLIPTextConfig(folder.config('text_encoder_2'), `${where}/text_encoder_2/config.json`)),
  };
}

/**
 * Every model's weight file against its declaration before anything is uploaded, summarised on
 * one line per mismatched model: "unet weights in F do not match the model: 840 missing (a (64),
 * b (64, 16), c (8), …), 248 unexpected (d, e, f, …)" (a wrong checkpoint has hundreds).
 */
function checkWeights(folder: ModelFolder, registries: ReadonlyArray<[ModelComponent, WeightRegistry]>): void {
  const reports: string[] = [];
  for (const [component, registry] of registries) {
    const source = folder.weights(component);
    const byKind = new Map<string, string[]>();
    for (const { kind, detail } of checkAgainst(registry.expected(), source, registry.tolerated)) {
      byKind.set(kind, [...(byKind.get(kind) ?? []), detail]);
    }
    if (byKind.size === 0) continue;
    const parts = [...byKind].map(([kind, items]) => `${items.length} ${kind} (${items.slice(0, 3).join(', ')}${items.length > 3 ? ', …' : ''})`);
    reports.push(`${component} weights in ${source.description} do not match the model: ${parts.join(', ')}`);
  }
  if (reports.length > 0) usage(reports.join('; '));
}

export function pickDtype(gpu: Gpu, asked: ComputeDType | undefined): DType {
  if (asked === 'f16' && !gpu.f16) usage(`--dtype f16 needs the shader-f16 feature, which this adapter (${gpu.adapterName}) lacks; use --dtype f32`);
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
