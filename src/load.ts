// loadPipeline's steps, shared by the Node and browser entries: everything that can be checked
// is checked before the GPU opens (the run's options, the model folder's configs, tokenizers and
// weight tables, the random tensors supplied), then the device's limits against the run's
// memory plan, then the weights; any failure disposes what was opened.

import { asUsage, NetworkError, usage, UsageError } from './errors.js';
import type { Gpu, GpuOptions } from './gpu/runtime.js';
import { applyStoredTuning, type TuningStore } from './gpu/tuning-table.js';
import { builtinSdxlFs } from './io/builtin-config.js';
import { blobReader } from './io/blob-reader.js';
import type { ByteReader } from './io/byte-reader.js';
import { ModelFolder, type ModelFs } from './io/model-folder.js';
import { openSingleFile } from './io/single-file.js';
import { openVae } from './io/vae-source.js';
import { formatMemoryPlan } from './models/memory-plan.js';
import { type PipelineOptions, type Preflight, resolveGenerate, schedulerOverrides, type VaeSource } from './pipeline/options.js';
import { checkRun, planRun, type RunShape } from './pipeline/preflight.js';
import { type LoraOpener, Loras } from './models/lora.js';
import { checkMaxMemory, describeChoice } from './pipeline/budget.js';
import { DEFAULT_RUN, loraModel, pickDtype, type PreparedModel, prepareModel, SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';

export interface LoadOptions extends PipelineOptions {
  /**
   * The generate() or imageToImage() call to come (its options; image-to-image when `image` is
   * given): checked against the model before the GPU opens, and its memory plan against the
   * device's limits before any weight is uploaded. `describe()` then includes the plan.
   */
  readonly preflight?: Preflight;
  /**
   * For a single-file checkpoint: the diffusers folder (path or base URL in Node, base URL in the
   * browser, or any ModelFs) whose configs and tokenizers it runs with; its weights are not read.
   * Default: the built-in SDXL-Turbo configs and CLIP tokenizers.
   */
  readonly config?: string | ModelFs;
  /**
   * Use the variant choices `sdxl-turbo tune` (or the browser's `tune`) stored for this adapter,
   * where there are some (default true); false: every kernel's built-in choice.
   */
  readonly tune?: boolean;
  /** Told a warning that does not stop the load (an unusable tuning table); default console.warn. */
  readonly onWarning?: (message: string) => void;
}

/** What a model source opens to: a diffusers folder, or one single-file (SGM) checkpoint. */
export type OpenedModel = ModelFs | { readonly checkpoint: ByteReader };

/** What differs between Node and the browser. */
export interface Platform<Png> {
  /** The model's files (Node: may download them first). */
  readonly open: () => Promise<OpenedModel>;
  /** The `config` option given as a string. */
  readonly openConfig: (config: string) => Promise<ModelFs>;
  readonly openGpu: (options: GpuOptions) => Promise<Gpu>;
  /** Node: the bytes; browser: a Blob. */
  readonly wrapPng: (bytes: Uint8Array) => Png;
  /** Opens a LoRA file (Node: paths too). */
  readonly openLora: LoraOpener;
  /** Opens the `vae` option's folder or file. */
  readonly openVae: (vae: VaeSource) => Promise<OpenedModel>;
  /** Fetches the weights once the checks passed and the device opened (browser cache); may
   *  return the folder to load instead of `folder`, which it then closes (the browser's 8-bit
   *  weight cache: docs/Q8.md). */
  readonly download?: (gpu: Gpu, folder: ModelFolder, prepared: PreparedModel) => Promise<ModelFolder | undefined>;
  /** Where tuning tables are stored (Node: the user cache folder; browser: IndexedDB). */
  readonly tuningStore?: TuningStore;
}

export async function loadWith<Png>(model: string, options: LoadOptions, platform: Platform<Png>): Promise<SdxlTurboPipeline<Png>> {
  const { signal, preflight } = options;
  try {
    signal?.throwIfAborted();
    const run = preflight ? resolveGenerate(preflight, preflight.image !== undefined) : null;
    const maxMemory = checkMaxMemory(options.maxMemory);
    if (options.tune !== undefined && typeof options.tune !== 'boolean') usage(`tune must be true or false, got ${JSON.stringify(options.tune)}`, 'tune');
    let folder = await openModelFolder(await platform.open(), options, platform);
    let gpu: Gpu | null = null;
    let loras = Loras.none;
    let handedOver = false;
    try {
      const prepared = await prepareModel(folder, options);
      loras = await Loras.open(options.loras, loraModel(prepared), platform.openLora);
      const shape: RunShape | null = run && { width: run.width, height: run.height, batch: run.batch, steps: run.denoisingSteps, imageToImage: run.strength !== null, guidance: run.guidance, scheduler: schedulerOverrides(options), weights: prepared.weights };
      if (shape) await checkInputs(() => checkRun(folder, shape, preflight?.inputs, 'inputs'));
      signal?.throwIfAborted();
      gpu = await platform.openGpu({ profile: options.profile === true, allowF16: options.dtype !== 'f32', ...(options.subgroupMatrix === undefined ? {} : { subgroupMatrix: options.subgroupMatrix }) });
      const dtype = pickDtype(gpu, options.dtype); // refuses f16 on an adapter without it
      // Before anything is planned or compiled: the run's pipelines are the tuned variants'.
      if (options.tune !== false && platform.tuningStore) await applyStoredTuning(gpu, platform.tuningStore, options.onWarning ?? ((m) => console.warn(m)));
      // With a budget, the run to come (by default load()'s) is planned for it before any weight loads.
      const planned = shape ?? (maxMemory === undefined ? null : { ...DEFAULT_RUN, weights: prepared.weights });
      const memory = planned ? await planRun(folder, planned, dtype, gpu.limits, { maxMemory, releaseEncoders: options.releaseEncoders }) : null;
      folder = (await platform.download?.(gpu, folder, prepared)) ?? folder;
      signal?.throwIfAborted();
      const plan = memory && [formatMemoryPlan(memory.plan, memory.options), ...(memory.choice ? [describeChoice(memory.choice)] : [])].join('\n');
      const context = { model, wrapPng: platform.wrapPng, prepared, loras, openLora: platform.openLora, ...(shape ? { run: shape } : {}), ...(plan ? { plan } : {}) };
      // From here the pipeline owns the device and the folder, and disposes them if it fails.
      handedOver = true;
      return await SdxlTurboPipeline.load(gpu, folder, options, true, context);
    } catch (e) {
      if (!handedOver) {
        gpu?.dispose();
        await loras.close();
        await folder.close();
      }
      throw e;
    }
  } catch (e) {
    // As fetch rejects: with the signal's reason, whichever step noticed the abort.
    if (signal?.aborted) throw signal.reason;
    throw e;
  }
}

/** The model folder `opened` names with the `config`, `variant` and `vae` options applied
 *  (configs checked, weight tables read, no weight loaded). */
async function openModelFolder(opened: OpenedModel, options: Pick<LoadOptions, 'config' | 'variant' | 'vae'>, platform: Pick<Platform<unknown>, 'openConfig' | 'openVae'>): Promise<ModelFolder> {
  return withVae(await asUsage(openFolder(opened, options, platform)), options, platform);
}

async function openFolder(opened: OpenedModel, options: Pick<LoadOptions, 'config' | 'variant'>, platform: Pick<Platform<unknown>, 'openConfig'>): Promise<ModelFolder> {
  const { config } = options;
  if (!('checkpoint' in opened)) {
    if (config !== undefined) usage(`config: only for a single-file checkpoint; ${opened.description} is a diffusers folder with its own configs`, 'config');
    return ModelFolder.open(opened, { variant: options.variant });
  }
  try {
    const fs = config === undefined ? builtinSdxlFs() : typeof config === 'string' ? await platform.openConfig(config) : config;
    return await openSingleFile(opened.checkpoint, fs);
  } catch (e) {
    await opened.checkpoint.close?.();
    throw e;
  }
}

/** A `vae` option given as an object: a Blob of one file, or a folder's ModelFs. */
export function openVaeObject(vae: Exclude<VaeSource, string>): OpenedModel {
  return vae instanceof Blob ? { checkpoint: blobReader(vae, (vae as Partial<File>).name ?? 'vae file') } : vae;
}

/** `folder` with the `vae` option's VAE in place of its own (closed if that fails). */
async function withVae(folder: ModelFolder, options: Pick<LoadOptions, 'vae' | 'variant'>, platform: Pick<Platform<unknown>, 'openVae'>): Promise<ModelFolder> {
  if (options.vae === undefined) return folder;
  try {
    const opened = await platform.openVae(options.vae);
    return folder.withVae(await openVae(opened, folder, options.variant));
  } catch (e) {
    await folder.close();
    throw e instanceof UsageError || e instanceof NetworkError ? e : new UsageError(`vae: ${(e as Error).message}`, { cause: e, option: 'vae' });
  }
}

/** checkRun's messages about supplied tensors start with "inputs:": they are about that option. */
async function checkInputs(check: () => Promise<void>): Promise<void> {
  try {
    await check();
  } catch (e) {
    if (e instanceof UsageError && e.option === undefined && e.message.startsWith('inputs:')) throw new UsageError(e.message, { cause: e, option: 'inputs' });
    throw e;
  }
}
