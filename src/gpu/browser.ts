// Browser seam: WebGPU from navigator.gpu.

import { Gpu, type GpuOptions } from './runtime.js';

export function openBrowserGpu(options: GpuOptions = {}): Promise<Gpu> {
  const gpu = typeof navigator === 'undefined' ? undefined : navigator.gpu;
  return Gpu.open(gpu, options);
}
