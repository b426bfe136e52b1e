// Node entry of the library: loadPipeline(source, options) → { generate, imageToImage, dispose }.
// The declarations use WebGPU's types (GPUSupportedLimits, …): a consumer gets them with these.
/// <reference types="@webgpu/types" preserve="true" />

import { openNodeGpu } from './gpu/node.js';
import type { ModelFs } from './io/model-folder.js';
import { openFileReader } from './io/node-file.js';
import { type LoadOptions, loadWith, openVaeObject } from './load.js';
import { openLoraSource } from './models/lora.js';
import { openConfig, openModel, openVaePath } from './node/model-source.js';
import { nodeTuningStore } from './node/tuning-store.js';
import type { GenerateResult as Result, SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';

export * from './api.js';
export { readPng } from './io/png.js';
export { decodeImage, type ImageLimits, readImage } from './node/image-file.js';

/** The pipeline loadPipeline gives here, whose images' png() is a Uint8Array. */
export type Pipeline = SdxlTurboPipeline<Uint8Array>;
export type GenerateResult = Result<Uint8Array>;

export interface NodeLoadOptions extends LoadOptions {
  /** A Hugging Face repo's branch, tag or commit (default main). */
  readonly revision?: string;
  /** Where Hugging Face downloads go (default $HF_HUB_CACHE, else $HF_HOME/hub, else
   *  ~/.cache/huggingface/hub, as huggingface_hub keeps them). */
  readonly cacheDir?: string;
  /** Where tuning tables are read (default $SDXL_TURBO_TUNING_DIR, else
   *  ${XDG_CACHE_HOME:-~/.cache}/sdxl-turbo/tuning; see docs/TUNING.md). */
  readonly tuningDir?: string;
}

/**
 * Loads SDXL-Turbo from a diffusers folder path, an HTTP(S) base URL (read with Range requests),
 * a Hugging Face repo id (downloaded to the HF cache on first use), a single-file (SGM)
 * checkpoint — a .safetensors path, its http(s) URL or a hub file org/name/FILE.safetensors, with
 * `config` or the built-in SDXL configs — or any ModelFs, on a new
 * WebGPU device (Dawn). Bad input rejects with UsageError, a failed download with NetworkError,
 * no adapter or a failing device with GpuError, an abort with `signal.reason`.
 */
export function loadPipeline(source: string | ModelFs, options: NodeLoadOptions = {}): Promise<Pipeline> {
  const { variant, revision, cacheDir, signal, onProgress } = options;
  return loadWith(typeof source === 'string' ? source : source.description, options, {
    open: async () =>
      typeof source !== 'string'
        ? source
        : openModel(source, { variant, revision, cacheDir, signal, onDownload: onProgress }),
    openConfig,
    openVae: async (vae) => (typeof vae === 'string' ? openVaePath(vae) : openVaeObject(vae)),
    openGpu: openNodeGpu,
    openLora: (lora) => (typeof lora === 'string' && !/^https?:\/\//i.test(lora) ? openFileReader(lora) : openLoraSource(lora)),
    wrapPng: (bytes) => bytes,
    tuningStore: nodeTuningStore(options.tuningDir),
  });
}
