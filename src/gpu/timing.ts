// Timing one op call on the device, shared by `tune` (src/pipeline/tune.ts) and the kernel
// benchmark: GPU timestamps around each dispatch when the runtime profiles (the adapter has
// timestamp-query), else the wall clock around the call and a sync.

import type { Gpu } from './runtime.js';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Milliseconds of one call of `run` (its dispatches' summed GPU time when profiling, else the
 *  wall clock until the GPU is done); throws what the GPU raised. */
export async function timeOnce(gpu: Gpu, run: () => void): Promise<number> {
  gpu.profiler?.reset();
  const start = performance.now();
  run();
  await gpu.sync();
  const wall = performance.now() - start;
  if (!gpu.profiler) return wall;
  const timings = await gpu.profiler.report();
  return timings.reduce((sum, t) => sum + t.totalMs, 0);
}

export interface Timing {
  /** Median and fastest call. */
  readonly ms: number;
  readonly minMs: number;
  readonly reps: number;
}

/** One warm-up call, then up to `reps` timed calls while `budgetMs` lasts (at least one). */
export async function measure(gpu: Gpu, run: () => void, reps: number, budgetMs: number): Promise<Timing> {
  const start = performance.now();
  await timeOnce(gpu, run);
  const samples: number[] = [];
  let last = 0;
  while (samples.length < reps && (samples.length === 0 || performance.now() - start + last <= budgetMs)) {
    const t0 = performance.now();
    samples.push(await timeOnce(gpu, run));
    last = performance.now() - t0;
  }
  return { ms: median(samples), minMs: Math.min(...samples), reps: samples.length };
}
