// Node seam: WebGPU through Dawn (the `webgpu` package). Dawn keeps the process alive
// while the object returned by create() is referenced, so dispose() drops it.

import { create, globals } from 'webgpu';
import { type GpuOptions, WebGpuRuntime } from './runtime.js';

let globalsInstalled = false;

export async function openNodeGpu(options: GpuOptions = {}): Promise<WebGpuRuntime> {
  if (!globalsInstalled) {
    Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, … as in a browser
    globalsInstalled = true;
  }
  let instance: GPU | null = create([]);
  return WebGpuRuntime.open(instance, options, () => {
    // Dropped a turn later: collected right after device.destroy(), Dawn now and then crashes
    // (segfault, futex or mutex assertion) tearing the device down.
    setTimeout(() => (instance = null), 0);
  });
}
