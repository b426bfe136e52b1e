// Browser seam: WebGPU from navigator.gpu.

import { type GpuOptions, WebGpuRuntime } from './runtime.js';

export function openBrowserGpu(options: GpuOptions = {}): Promise<WebGpuRuntime> {
  const gpu = typeof navigator === 'undefined' ? undefined : navigator.gpu;
  return WebGpuRuntime.open(gpu, options);
}
