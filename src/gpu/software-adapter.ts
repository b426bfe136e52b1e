// Whether an adapter computes on the CPU. Such adapters run a workgroup on one CPU thread with
// the invocations as SIMD lanes, so they want other kernel variants than a GPU (src/gpu/tuning.ts)
// and hold their buffers in the process's own memory (src/pipeline/default-budget.ts).

/** What is read of a GPUAdapterInfo (WebGPU's own type satisfies it). */
export interface AdapterInfoLike {
  readonly vendor?: string;
  readonly architecture?: string;
  readonly description?: string;
  readonly isFallbackAdapter?: boolean;
}

/** SwiftShader, llvmpipe / lavapipe, WARP, or any adapter the browser calls a fallback. */
export function isSoftwareAdapter(info: AdapterInfoLike | undefined): boolean {
  if (info?.isFallbackAdapter) return true;
  return /swiftshader|llvmpipe|lavapipe|software|basic render/i.test(`${info?.vendor ?? ''} ${info?.architecture ?? ''} ${info?.description ?? ''}`);
}
