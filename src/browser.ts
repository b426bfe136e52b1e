// Browser entry of the library: loadPipeline(source, options) → { generate, imageToImage, dispose },
// The declarations use WebGPU's types (GPUSupportedLimits, …): a consumer gets them with these.
/// <reference types="@webgpu/types" preserve="true" />
// on WebGPU from navigator.gpu. Nothing here (or below) may import a Node built-in.

import { usage } from './errors.js';
import { MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, type RgbImage, rgbaToRgb } from './image.js';
import { openBrowserGpu } from './gpu/browser.js';
import { NoAdapterError } from './gpu/runtime.js';
import { canCacheModels, cachedQ8Bytes, cachedUrlModelFs, type CachedModelFs, openQ8Cache, type Q8CacheKey, writeQ8Cache } from './io/browser-cache.js';
import { blobReader } from './io/blob-reader.js';
import { filesModelFs, isRepoId, ModelFolder, type ModelFs, parseHubFile, urlModelFs } from './io/model-folder.js';
import { openUrlReader } from './io/url-reader.js';
import { type LoadOptions, loadWith, openVaeObject } from './load.js';
import { builtinSdxlFs } from './io/builtin-config.js';
import { formatMemoryPlan } from './models/memory-plan.js';
import { openLoraSource } from './models/lora.js';
import { describeChoice, planBudget } from './pipeline/budget.js';
import { defaultMemoryBudget } from './pipeline/default-budget.js';
import { Q8_COMPONENTS, q8Files } from './pipeline/q8-files.js';
import { QUANTIZE_KERNEL_HASH } from './ops/quantize.js';
import { type PipelineConfigs, shapeInput } from './pipeline/dry-run.js';
import { type ComputeDType, type Preflight, resolveGenerate } from './pipeline/options.js';
import { checkLimits, readConfigs } from './pipeline/preflight.js';
import { formatTuneResult, tune, type TuneOptions, type TuneResult } from './pipeline/tune.js';
import { saveTuningTable } from './gpu/tuning-table.js';
import { canStoreTuning, indexedDbTuningStore } from './io/tuning-store-browser.js';
import type { GenerateResult as Result, SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';

export * from './api.js';
export { clearModelCache, clearQ8Cache, MODEL_CACHE, Q8_CACHE } from './io/browser-cache.js';
export { type BudgetAdapter, defaultMemoryBudget } from './pipeline/default-budget.js';
export { formatBytes, parseByteSize } from './pipeline/budget.js';

/** The pipeline loadPipeline gives here, whose images' png() is a Blob. */
export type Pipeline = SdxlTurboPipeline<Blob>;
export type GenerateResult = Result<Blob>;

/**
 * Where the model comes from: a base URL of a diffusers folder ('https://…/', or '/…', './…'
 * relative to the page), a Hugging Face repo id ('org/name'), the files of a folder the user
 * picked (a FileList from <input webkitdirectory>, or a map from paths inside the folder such as
 * 'unet/config.json' to Files), any ModelFs, or a single-file (SGM) checkpoint: a File / Blob
 * the user picked, or the URL of a .safetensors file (read with Range requests, not cached).
 */
export type ModelSource = string | Blob | FileList | ReadonlyMap<string, Blob> | ModelFs;

export interface BrowserLoadOptions extends LoadOptions {
  /** Keep the files of a URL or hub model in Cache Storage, so a reload does not download
   *  them again (default true where the page can: Cache Storage needs https or localhost).
   *  With weights 'q8' (and no LoRAs nor `vae`), the text encoders' and UNet's 8-bit weights
   *  are kept instead of their files: made at the first load, read by the next ones
   *  (docs/Q8.md, "In the browser"). */
  readonly cache?: boolean;
}

const HUB = 'https://huggingface.co';

/**
 * Loads SDXL-Turbo from `source` on a new WebGPU device of this page. The device opens before
 * any weight downloads, so a browser without a usable adapter fails first. Bad input rejects
 * with UsageError, a failed download with NetworkError, no adapter or a failing device with
 * GpuError, an abort with `signal.reason`. Images' png() gives a Blob.
 */
export async function loadPipeline(source: ModelSource, options: BrowserLoadOptions = {}): Promise<Pipeline> {
  if (typeof navigator === 'undefined' || !navigator.gpu) {
    throw new NoAdapterError(
      typeof isSecureContext !== 'undefined' && !isSecureContext
        ? 'WebGPU needs a secure context: open this page over https:// or from localhost / 127.0.0.1.'
        : 'This browser has no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge (113+), Safari 26+ or Firefox 141+, with WebGPU enabled.',
    );
  }
  let cached: CachedModelFs | null = null;
  // Set when the 8-bit cache is to be made at this load (it was not there).
  let q8ToMake: Q8CacheKey | null = null;
  options = { ...options, maxMemory: options.maxMemory ?? savedMaxMemory() ?? (await adapterBudget()) };
  return loadWith(typeof source === 'string' ? source : source instanceof Blob ? blobName(source) : 'description' in source ? source.description : 'selected folder', options, {
    open: async () => {
      if (source instanceof Blob) return { checkpoint: blobReader(source, blobName(source)) };
      if (typeof source !== 'string') return localFs(source);
      const url = modelUrl(source);
      if (new URL(url).pathname.endsWith('.safetensors')) return { checkpoint: await openUrlReader(url) };
      if (options.cache === false || !canCacheModels()) return urlModelFs(url);
      cached = await cachedUrlModelFs(url);
      const key = q8CacheKey(url, options);
      const q8 = key && (await openQ8Cache(key, cached));
      if (q8) return q8;
      q8ToMake = key;
      return cached;
    },
    openConfig: async (config) => urlModelFs(modelUrl(config)),
    // A VAE URL is read with Range requests, not cached (it is small beside the model).
    openVae: async (vae) => {
      if (typeof vae !== 'string') return openVaeObject(vae);
      const url = modelUrl(vae);
      return new URL(url).pathname.endsWith('.safetensors') ? { checkpoint: await openUrlReader(url) } : urlModelFs(url);
    },
    openGpu: openBrowserGpu,
    // Relative URLs are the page's, as for the model.
    openLora: (lora) => openLoraSource(typeof lora === 'string' ? new URL(lora, globalThis.location?.href).href : lora),
    wrapPng: (bytes) => new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' }),
    ...(canStoreTuning() ? { tuningStore: indexedDbTuningStore() } : {}),
    download: async (gpu, folder, prepared) => {
      const download = { ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}) };
      if (!q8ToMake) return void (await cached?.download(download));
      // The networks' files are read (not kept) to make their 8-bit files; the rest is kept.
      await cached!.download({ ...download, only: (path) => !Q8_COMPONENTS.some((c) => path.startsWith(`${c}/`)) });
      const files = q8Files(gpu, folder, prepared);
      const configs = files.map((f) => ({ path: `${f.component}/config.json`, text: `${JSON.stringify(f.config, null, 2)}\n` }));
      if (!(await writeQ8Cache(q8ToMake, [...configs, ...files], download))) return undefined;
      // Loaded from what was kept, so this load and the next ones compute with the same weights.
      const fs = await openQ8Cache(q8ToMake, cached!);
      if (!fs) throw new Error(`${folder.description}: the 8-bit weights just kept in this browser cannot be read back`);
      const q8 = await ModelFolder.open(fs, { variant: options.variant });
      await folder.close();
      return q8;
    },
  });
}

/** The 8-bit cache a load of the model at `url` with `options` uses; null where it uses none
 *  (float weights, or LoRAs or another VAE, which change the networks' weights). */
function q8CacheKey(url: string, options: BrowserLoadOptions): Q8CacheKey | null {
  if (options.weights !== 'q8' || (options.loras?.length ?? 0) > 0 || options.vae !== undefined) return null;
  return { model: url, variant: options.variant ?? 'default', kernel: QUANTIZE_KERNEL_HASH };
}

/** Bytes of the 8-bit weights kept in this browser for `source` (a URL or hub model) loaded
 *  with `options` (weights 'q8'), or null when there are none, or none current. */
export async function cachedQ8Size(source: ModelSource, options: Pick<BrowserLoadOptions, 'weights' | 'variant' | 'loras' | 'vae'> = { weights: 'q8' }): Promise<number | null> {
  if (typeof source !== 'string' || !canCacheModels()) return null;
  const key = q8CacheKey(modelUrl(source), options);
  return key && cachedQ8Bytes(key);
}

/** defaultMemoryBudget of the adapter this page gets, if any. */
async function adapterBudget(): Promise<number | undefined> {
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  return adapter ? defaultMemoryBudget(adapter) : undefined;
}

/** Where the demo keeps the user's GPU memory budget (bytes, in localStorage): loadPipeline's
 *  default maxMemory in this browser. Without it, the default is defaultMemoryBudget(adapter):
 *  WebGPU does not tell a page how much memory its GPU has. */
export const MAX_MEMORY_SETTING = 'sdxl-turbo-webgpu.maxMemory';

/** The saved budget, if any (a bad value is ignored: the setting is the demo's to write). */
export function savedMaxMemory(): number | undefined {
  const saved = Number(globalThis.localStorage?.getItem(MAX_MEMORY_SETTING) ?? NaN);
  return Number.isSafeInteger(saved) && saved > 0 ? saved : undefined;
}

/** What a run of `source` needs on this browser's adapter, from the configs alone (nothing is
 *  downloaded but them): the dry run's memory plan, and with `maxMemory` the budget's choice or
 *  why none fits. */
export async function planModelMemory(source: ModelSource, run: Preflight & { readonly dtype?: ComputeDType; readonly weights?: 'q8' }, maxMemory?: number): Promise<{ plan: string; budget: string | null }> {
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) throw new NoAdapterError('no WebGPU adapter');
  const configs = await modelConfigs(source);
  const f16 = adapter.features.has('shader-f16') && run.dtype !== 'f32';
  const dtype = f16 ? 'f16' : 'f32';
  const r = resolveGenerate(run, run.image !== undefined);
  const shape = { width: r.width, height: r.height, batch: r.batch, steps: r.denoisingSteps, imageToImage: r.strength !== null, guidance: r.guidance, ...(run.weights ? { weights: run.weights } : {}) };
  const input = shapeInput(configs, shape, dtype);
  const device = { limits: adapter.limits, f16 };
  const dry = await checkLimits(configs, input, device);
  const plan = formatMemoryPlan(dry.plan, { width: r.width, height: r.height, batch: r.batch, dtype, ...(run.weights ? { weights: run.weights } : {}) });
  if (maxMemory === undefined) return { plan, budget: null };
  const budget = await planBudget(configs, input, device, maxMemory).then(
    ({ choice }) => describeChoice(choice),
    (e: Error) => e.message,
  );
  return { plan, budget };
}

/**
 * Measures the kernel variants of a `width`×`height` run of `source`'s model on this browser's
 * GPU (src/pipeline/tune.ts; only the configs are downloaded) and stores the fastest in
 * IndexedDB, where loadPipeline finds them (unless `tune: false`). Returns the measurements,
 * the report's lines and where the table is.
 */
export async function tuneModel(source: ModelSource, options: TuneOptions): Promise<{ result: TuneResult; report: string[]; where: string }> {
  const configs = await modelConfigs(source);
  const gpu = await openBrowserGpu({ allowF16: options.dtype !== 'f32' });
  try {
    const result = await tune(gpu, configs, options);
    const { where } = await saveTuningTable(indexedDbTuningStore(), result.table);
    return { result, report: formatTuneResult(result), where };
  } finally {
    gpu.dispose();
  }
}

/** The configs of `source`'s model (a single file's: the built-in SDXL ones). */
function modelConfigs(source: ModelSource): Promise<PipelineConfigs> {
  const fs = source instanceof Blob || (typeof source === 'string' && new URL(modelUrl(source)).pathname.endsWith('.safetensors')) ? builtinSdxlFs() : typeof source === 'string' ? urlModelFs(modelUrl(source)) : localFs(source);
  return readConfigs(fs);
}

const blobName = (blob: Blob): string => (blob as Partial<File>).name ?? 'selected file';

function localFs(source: Exclude<ModelSource, string | Blob>): ModelFs {
  if ('open' in source && 'readText' in source) return source;
  if (source instanceof Map) return filesModelFs(source);
  return pickedFolder(source as FileList);
}

/** A base URL (absolute, or relative to the page when it starts with / or .), a hub repo id or a hub file's URL. */
function modelUrl(source: string): string {
  if (/^https?:\/\//i.test(source)) return source;
  if (/^\.{0,2}\//.test(source)) return new URL(source, globalThis.location?.href).href;
  if (isRepoId(source)) return `${HUB}/${source}/resolve/main/`;
  const hubFile = parseHubFile(source);
  if (hubFile) return `${HUB}/${hubFile.repoId}/resolve/main/${hubFile.path}`;
  usage(`model source ${JSON.stringify(source)}: not a URL (https://…, /…, ./…), a Hugging Face repo id (org/name) nor a hub file (org/name/FILE.safetensors)`, 'source');
}

/** <input webkitdirectory> gives paths that start with the chosen folder's name: drop it. */
function pickedFolder(list: FileList): ModelFs {
  const files = new Map<string, Blob>();
  let folder = 'selected folder';
  for (const file of Array.from(list)) {
    const path = file.webkitRelativePath || file.name;
    const slash = path.indexOf('/');
    if (slash > 0) folder = path.slice(0, slash);
    files.set(path.slice(slash + 1), file);
  }
  return filesModelFs(files, folder);
}

/**
 * Decodes an image file to 8-bit RGB, an imageToImage input, with whatever the browser decodes
 * (createImageBitmap: PNG, JPEG, WebP, AVIF, GIF's first frame…). EXIF orientation is applied,
 * colour profiles are not (as PIL's convert('RGB') ignores them); alpha is dropped, though the
 * canvas the pixels pass through zeroes fully transparent ones. A file that is too large or
 * does not decode rejects with a UsageError naming it (`description`, default the File's name).
 */
export async function decodeImage(file: Blob, description = file instanceof File ? file.name : 'image'): Promise<RgbImage> {
  if (file.size > MAX_IMAGE_BYTES) usage(`${description}: too large (${file.size} bytes; at most ${MAX_IMAGE_BYTES})`);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    usage(`${description}: not an image this browser can decode (${(e as Error).message})`);
  }
  const { width, height } = bitmap;
  try {
    if (width * height > MAX_IMAGE_PIXELS) usage(`${description}: too large (${width}×${height} pixels; at most ${MAX_IMAGE_PIXELS} pixels)`);
    const context = new OffscreenCanvas(width, height).getContext('2d')!;
    context.drawImage(bitmap, 0, 0);
    return rgbaToRgb(width, height, context.getImageData(0, 0, width, height).data);
  } finally {
    bitmap.close();
  }
}
