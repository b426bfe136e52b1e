// Node seam: WebGPU through Dawn (the `webgpu` package). Dawn keeps the process alive
// while the object returned by create() is referenced, so dispose() drops it.

import { create, globals } from 'webgpu';
import { throttleDawnPolling } from './dawn-poll.js';
import { type GpuOptions, WebGpuRuntime } from './runtime.js';

let globalsInstalled = false;

/** Opens the adapter's device. SDXL_SUBGROUP_MATRIX=1 in the environment turns on
 *  GpuOptions.subgroupMatrix for every tool that does not set it. */
export async function openNodeGpu(options: GpuOptions = {}): Promise<WebGpuRuntime> {
  if (!globalsInstalled) {
    Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, … as in a browser
    globalsInstalled = true;
  }
  const subgroupMatrix = options.subgroupMatrix ?? process.env.SDXL_SUBGROUP_MATRIX === '1';
  // Dawn lists experimental features (chromium-experimental-subgroup-matrix) only with
  // allow_unsafe_apis: asked for only with the subgroup-matrix opt-in. Dawn rounds timestamps
  // to 65.5 µs, a browser's defence against timing attacks that Node does not need; it left a
  // 0.4 ms kernel measured in steps of 16% (BENCHMARKS.md, "Timestamps unrounded").
  let instance: GPU | null = create(['disable-dawn-features=timestamp_quantization', ...(subgroupMatrix ? ['enable-dawn-features=allow_unsafe_apis'] : [])]);
  let releasePolling: (() => void) | null = null;
  const runtime = await WebGpuRuntime.open(instance, { ...options, subgroupMatrix }, () => {
    releasePolling?.();
    // Dropped a turn later: collected right after device.destroy(), Dawn now and then crashes
    // (segfault, futex or mutex assertion) tearing the device down.
    setTimeout(() => (instance = null), 0);
  });
  // A software adapter computes on the cores Dawn's wait would spin on (src/gpu/dawn-poll.ts).
  if (runtime.tuning.cpu) releasePolling = throttleDawnPolling();
  return runtime;
}
