// Node entry of the library: loadPipeline(source, options) → { generate, imageToImage, dispose }.

import { asUsage } from './errors.js';
import { openNodeGpu } from './gpu/node.js';
import { type ModelFs, ModelFolder } from './io/model-folder.js';
import { openModel } from './node/model-source.js';
import type { PipelineOptions } from './pipeline/options.js';
import { SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';

export type { GenerateResult } from './pipeline/sdxl-turbo.js';
export type { GenerateOptions, ImageToImageOptions, PipelineOptions, ProgressEvent } from './pipeline/options.js';
export type { RgbImage } from './image.js';
export { SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';
export { UsageError } from './errors.js';

/**
 * Loads SDXL-Turbo from a diffusers folder path, an HTTP(S) base URL, a Hugging Face repo id
 * (downloaded to the HF cache on first use) or any ModelFs, on a new WebGPU device.
 */
export async function loadPipeline(source: string | ModelFs, options: PipelineOptions = {}): Promise<SdxlTurboPipeline> {
  const fs = typeof source === 'string' ? await openModel(source, { variant: options.variant }) : source;
  const folder = await asUsage(ModelFolder.open(fs, { variant: options.variant }));
  const gpu = await openNodeGpu({ profile: options.profile === true, allowF16: options.dtype !== 'f32' });
  try {
    return await SdxlTurboPipeline.load(gpu, folder, options, true);
  } catch (e) {
    gpu.dispose();
    await folder.close();
    throw e;
  }
}
