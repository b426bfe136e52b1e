// loadPipeline's steps, shared by the Node and browser entries: everything that can be checked
// is checked before the GPU opens (the run's options, the model folder's configs, tokenizers and
// weight tables, the random tensors supplied), then the device's limits against the run's
// memory plan, then the weights; any failure disposes what was opened.

import { asUsage, UsageError } from './errors.js';
import type { Gpu, GpuOptions } from './gpu/runtime.js';
import { ModelFolder, type ModelFs } from './io/model-folder.js';
import { formatMemoryPlan } from './models/memory-plan.js';
import { type PipelineOptions, type Preflight, resolveGenerate } from './pipeline/options.js';
import { checkRun, planRun, type RunShape } from './pipeline/preflight.js';
import { type LoraOpener, Loras } from './models/lora.js';
import { loraModel, pickDtype, prepareModel, SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';

export interface LoadOptions extends PipelineOptions {
  /**
   * The generate() or imageToImage() call to come (its options; image-to-image when `image` is
   * given): checked against the model before the GPU opens, and its memory plan against the
   * device's limits before any weight is uploaded. `describe()` then includes the plan.
   */
  readonly preflight?: Preflight;
}

/** What differs between Node and the browser. */
export interface Platform<Png> {
  /** The model's files (Node: may download them first). */
  readonly open: () => Promise<ModelFs>;
  readonly openGpu: (options: GpuOptions) => Promise<Gpu>;
  /** Node: the bytes; browser: a Blob. */
  readonly wrapPng: (bytes: Uint8Array) => Png;
  /** Opens a LoRA file (Node: paths too). */
  readonly openLora: LoraOpener;
  /** Fetches the weights once the checks passed and the device opened (browser cache). */
  readonly download?: () => Promise<void>;
}

export async function loadWith<Png>(model: string, options: LoadOptions, platform: Platform<Png>): Promise<SdxlTurboPipeline<Png>> {
  const { signal, preflight } = options;
  try {
    signal?.throwIfAborted();
    const run = preflight ? resolveGenerate(preflight, preflight.image !== undefined) : null;
    const fs = await platform.open();
    const folder = await asUsage(ModelFolder.open(fs, { variant: options.variant }));
    let gpu: Gpu | null = null;
    let loras = Loras.none;
    let handedOver = false;
    try {
      const prepared = await prepareModel(folder);
      loras = await Loras.open(options.loras, loraModel(prepared), platform.openLora);
      const shape: RunShape | null = run && { width: run.width, height: run.height, batch: run.batch, steps: run.denoisingSteps, imageToImage: run.strength !== null };
      if (shape) await checkInputs(() => checkRun(folder, shape, preflight?.inputs, 'inputs'));
      signal?.throwIfAborted();
      gpu = await platform.openGpu({ profile: options.profile === true, allowF16: options.dtype !== 'f32' });
      const memory = shape ? await planRun(folder, shape, pickDtype(gpu, options.dtype), gpu.limits) : null;
      await platform.download?.();
      signal?.throwIfAborted();
      const context = { model, wrapPng: platform.wrapPng, prepared, loras, openLora: platform.openLora, ...(memory ? { plan: formatMemoryPlan(memory.plan, memory.options) } : {}) };
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

/** checkRun's messages about supplied tensors start with "inputs:": they are about that option. */
async function checkInputs(check: () => Promise<void>): Promise<void> {
  try {
    await check();
  } catch (e) {
    if (e instanceof UsageError && e.option === undefined && e.message.startsWith('inputs:')) throw new UsageError(e.message, { cause: e, option: 'inputs' });
    throw e;
  }
}
