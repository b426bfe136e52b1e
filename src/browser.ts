// Browser entry of the library: loadPipeline(source, options) → { generate, imageToImage, dispose },
// on WebGPU from navigator.gpu. Nothing here (or below) may import a Node built-in.

import { asUsage, usage } from './errors.js';
import { openBrowserGpu } from './gpu/browser.js';
import { NoAdapterError } from './gpu/runtime.js';
import { type CachedModelFs, canCacheModels, cachedUrlModelFs, type DownloadProgress } from './io/browser-cache.js';
import { filesModelFs, isRepoId, ModelFolder, type ModelFs, urlModelFs } from './io/model-folder.js';
import type { PipelineOptions } from './pipeline/options.js';
import { SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';

export type { GenerateResult } from './pipeline/sdxl-turbo.js';
export type { GenerateOptions, ImageToImageOptions, PipelineOptions, ProgressEvent } from './pipeline/options.js';
export type { RgbImage } from './image.js';
export type { ModelFs } from './io/model-folder.js';
export type { DownloadProgress } from './io/browser-cache.js';
export { SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';
export { UsageError } from './errors.js';
export { NoAdapterError } from './gpu/runtime.js';
export { clearModelCache, MODEL_CACHE } from './io/browser-cache.js';

/**
 * Where the model comes from: a base URL of a diffusers folder ('https://…/', or '/…', './…'
 * relative to the page), a Hugging Face repo id ('org/name'), the files of a folder the user
 * picked (a FileList from <input webkitdirectory>, or a map from paths inside the folder such as
 * 'unet/config.json' to Files), or any ModelFs.
 */
export type ModelSource = string | FileList | ReadonlyMap<string, Blob> | ModelFs;

export interface BrowserPipelineOptions extends PipelineOptions {
  /** Keep the files of a URL or hub model in Cache Storage, so a reload does not download
   *  them again (default true where the page can: Cache Storage needs https or localhost). */
  readonly cache?: boolean;
  /** Download progress of each file not yet cached (cached models only). */
  readonly onDownload?: (event: DownloadProgress) => void;
  /** Cancels the download. */
  readonly signal?: AbortSignal;
}

const HUB = 'https://huggingface.co';

/** Loads SDXL-Turbo from `source` on a new WebGPU device of this page. */
export async function loadPipeline(source: ModelSource, options: BrowserPipelineOptions = {}): Promise<SdxlTurboPipeline> {
  if (typeof navigator === 'undefined' || !navigator.gpu) {
    throw new NoAdapterError(
      typeof isSecureContext !== 'undefined' && !isSecureContext
        ? 'WebGPU needs a secure context: open this page over https:// or from localhost / 127.0.0.1.'
        : 'This browser has no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge (113+), Safari 26+ or Firefox 141+, with WebGPU enabled.',
    );
  }
  const fs = await modelFs(source, options.cache !== false);
  // The device first: a browser without a usable adapter fails before any download.
  const gpu = await openBrowserGpu({ profile: options.profile === true, allowF16: options.dtype !== 'f32' });
  let folder: ModelFolder | null = null;
  try {
    folder = await asUsage(ModelFolder.open(fs, { variant: options.variant }));
    if (fs !== source && 'download' in fs) await fs.download({ onDownload: options.onDownload, signal: options.signal });
    options.signal?.throwIfAborted();
    return await SdxlTurboPipeline.load(gpu, folder, options, true);
  } catch (e) {
    gpu.dispose();
    await folder?.close();
    throw e;
  }
}

async function modelFs(source: ModelSource, cache: boolean): Promise<ModelFs | CachedModelFs> {
  if (typeof source === 'string') {
    const url = modelUrl(source);
    return cache && canCacheModels() ? cachedUrlModelFs(url) : urlModelFs(url);
  }
  if ('open' in source && 'readText' in source) return source;
  if (source instanceof Map) return filesModelFs(source);
  return pickedFolder(source as FileList);
}

/** A base URL (absolute, or relative to the page when it starts with / or .) or a hub repo id. */
function modelUrl(source: string): string {
  if (/^https?:\/\//i.test(source)) return source;
  if (/^\.{0,2}\//.test(source)) return new URL(source, globalThis.location?.href).href;
  if (isRepoId(source)) return `${HUB}/${source}/resolve/main/`;
  usage(`model source ${JSON.stringify(source)}: not a URL (https://…, /…, ./…) nor a Hugging Face repo id (org/name)`);
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
