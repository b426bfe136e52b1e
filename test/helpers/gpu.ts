// Shared test plumbing: one device per test file, seeded random data, error metrics.

import { afterAll, TestRunner } from 'vitest';
import { openNodeGpu } from '../../src/gpu/node.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import type { DType } from '../../src/tensor.js';

let shared: Promise<Gpu> | null = null;

/** The test file's GPU (lavapipe on CI), disposed after the file's tests. SDXL_TEST_NO_F16=1
 *  opens it without shader-f16, as an adapter that lacks it would be. */
export function testGpu(): Promise<Gpu> {
  if (!shared) {
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    shared = openNodeGpu({ allowF16: !process.env.SDXL_TEST_NO_F16 });
    afterAll(async () => (await shared!).dispose());
  }
  return shared;
}

/** Whether f16 can be tested: for `it.skipIf(!(await hasF16()))(…)`. */
export async function hasF16(): Promise<boolean> {
  return (await testGpu()).f16;
}

let withoutSubgroups: Promise<Gpu> | null = null;
let subgroupsReported = false;

/** Whether the test GPU has `subgroups`; without, the loss of coverage (`what` is left) is
 *  reported as `dtypes` reports f16's, not silent. */
export async function hasSubgroups(what: string): Promise<boolean> {
  const gpu = await testGpu();
  if (gpu.subgroups) return true;
  const reason = `subgroups skipped: the adapter (${gpu.adapterName}) has no subgroups, so ${what}`;
  await TestRunner.getCurrentTest()?.context.annotate(reason, 'skip');
  if (!subgroupsReported) console.warn(`${reason} (in this file)`);
  subgroupsReported = true;
  return false;
}

/**
 * The devices that run each reduction variant: the test GPU (subgroup operations where the
 * adapter has `subgroups`) and a second device opened without them (workgroup memory). Without
 * subgroups the loss of coverage is reported as `dtypes` reports f16's.
 */
export async function reductionGpus(): Promise<{ name: string; gpu: Gpu }[]> {
  const gpu = await testGpu();
  if (!(await hasSubgroups('only workgroup-memory reductions are tested'))) return [{ name: 'workgroup memory', gpu }];
  if (!withoutSubgroups) {
    const opened = openNodeGpu({ allowF16: !process.env.SDXL_TEST_NO_F16, allowSubgroups: false });
    withoutSubgroups = opened;
    afterAll(async () => (await opened).dispose());
  }
  return [{ name: 'subgroups', gpu }, { name: 'workgroup memory', gpu: await withoutSubgroups }];
}

let f16Reported = false;

/**
 * Both storage dtypes where the adapter has them (f16 needs shader-f16). Without f16 the loss of
 * coverage is reported, not silent: an annotation on the running test (in the reporter's
 * output) and, once per file, a warning.
 */
export async function dtypes(): Promise<DType[]> {
  const gpu = await testGpu();
  if (gpu.f16) return ['f32', 'f16'];
  const reason = `f16 skipped: the adapter (${gpu.adapterName}) has no shader-f16, so only f32 is tested`;
  await TestRunner.getCurrentTest()?.context.annotate(reason, 'skip');
  if (!f16Reported) console.warn(`${reason} (in this file)`);
  f16Reported = true;
  return ['f32'];
}

/** Deterministic PRNG (mulberry32) so a failure reproduces; seed from the test name. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n standard-normal values (Box–Muller) scaled by `scale`. */
export function randn(random: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - random();
    const v = random();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** A random integer in [lo, hi]. */
export function randint(random: () => number, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}

/** ‖a − b‖₂ / ‖b‖₂ (test/reference/util.ts, shared with tools/bench-kernels.ts). */
export { relL2 } from '../reference/util.js';

/** Largest |a − b|; NaN if any element is NaN. */
export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= m)) m = d; // NaN propagates
  }
  return m;
}

/** Rounds values to what an f16 tensor holds, so CPU references see the GPU's inputs. */
export { roundToF16 } from '../reference/cast.js';
