// The start-up guard of the subgroup-matrix matmul (src/ops/matmul-subgroup-matrix.ts): for each
// storage dtype, pick the adapter's fitting config, then run the kernel against the tiled one
// on small awkward problems; a dtype gets the variant only if every comparison passes. Any
// failure (no config, a shader the driver rejects, a WebGPU error, a wrong value) leaves the
// tiled kernels in use and says why in the report. WebGpuRuntime.open calls it when
// GpuOptions.subgroupMatrix is on.

import type { Gpu } from '../gpu/runtime.js';
import type { DType, Tensor } from '../tensor.js';
import { uploadAs } from './cast.js';
import { linear, matmul } from './matmul.js';
import {
  adapterSubgroupMatrixConfigs,
  pickSubgroupMatrixPlan,
  planTiles,
  SUBGROUP_MATRIX_VARIANT,
  type SubgroupMatrixPlan,
  type SubgroupMatrixState,
} from './matmul-subgroup-matrix.js';
import { quantize } from './quantize.js';

/** A device whose subgroup-matrix plans the guard sets (WebGpuRuntime). */
export type GuardedGpu = Gpu & { subgroupMatrix: SubgroupMatrixState | null };

/** Largest difference allowed, relative to the largest reference value. f16 outputs: both
 *  kernels round their f32 sums to f16 (half an ulp, 2⁻¹¹ relative, each) and Q8 weights staged
 *  as f16 add 2⁻¹² per weight: 2⁻⁹ covers it. f32: both accumulate in f32 over k < 100 terms in
 *  different orders; 2⁻¹⁶ leaves 2⁸ ulps of the largest output for that. A wrong kernel is off
 *  by O(1), a missing tile or row by the values themselves. */
export const SELF_CHECK_TOLERANCE: Record<DType, number> = { f16: 2 ** -9, f32: 2 ** -16 };

/** Runs the self-check of `plan` on `gpu`: null when it passes, else what failed. */
export type SelfCheck = (gpu: GuardedGpu, plan: SubgroupMatrixPlan) => Promise<string | null>;

/**
 * The plans `gpu` may use. `unavailable`: why the feature is not on the device (null: it is);
 * `selfCheck` is replaceable for tests of the guard itself.
 */
export async function enableSubgroupMatrix(
  gpu: GuardedGpu,
  info: GPUAdapterInfo | undefined,
  unavailable: string | null,
  selfCheck: SelfCheck = checkAgainstTiled,
): Promise<SubgroupMatrixState> {
  if (unavailable !== null) return { offered: [], plans: {}, report: [`subgroup-matrix matmul: off (${unavailable})`] };
  const configs = adapterSubgroupMatrixConfigs(info);
  const subgroupSize = (info as { subgroupMaxSize?: number } | undefined)?.subgroupMaxSize ?? 0;
  const plans: Partial<Record<DType, SubgroupMatrixPlan>> = {};
  const report: string[] = [];
  for (const dtype of gpu.f16 ? (['f16', 'f32'] as const) : (['f32'] as const)) {
    const picked = pickSubgroupMatrixPlan(configs, dtype, subgroupSize, gpu.limits);
    if ('reason' in picked) {
      report.push(`subgroup-matrix matmul ${dtype}: off (${picked.reason})`);
      continue;
    }
    const { plan } = picked;
    const c = plan.config;
    const { tileM, tileN, tileK } = planTiles(plan);
    const what = `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}, ${tileM}×${tileN}×${tileK} tiles, ${plan.subgroupSize}-wide subgroups`;
    const failure = await selfCheck(gpu, plan).catch((e: unknown) => (e instanceof Error ? e.message : String(e)));
    if (failure !== null) {
      report.push(`subgroup-matrix matmul ${dtype}: off (${what}: self-check failed: ${failure})`);
      continue;
    }
    plans[dtype] = plan;
    report.push(`subgroup-matrix matmul ${dtype}: on (${what}; self-check passed)`);
  }
  return { offered: configs, plans, report };
}

/** Values in [−1, 1] on a 1/64 grid (exact in f16), from a fixed LCG: the same problem on every run. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s >>> 16) % 129) / 64 - 1;
  }
  return out;
}

/** max |got − want| / max |want|: NaN anywhere gives NaN. */
export function maxRelative(got: Float32Array, want: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    diff = Number.isNaN(d) ? NaN : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return diff / Math.max(scale, 1e-30);
}

/**
 * The self-check: with the plan in place, a Linear (bias and residual, B as an (n, k) weight),
 * the same Linear with its weight 8-bit, and a batched matmul (B as (k, n)), all with m, n and k
 * off the tile multiples, each against the tiled kernel ('small').
 */
export async function checkAgainstTiled(gpu: GuardedGpu, plan: SubgroupMatrixPlan): Promise<string | null> {
  const { tileM, tileN, tileK } = planTiles(plan);
  const dtype = plan.dtype;
  const previous = gpu.subgroupMatrix;
  gpu.subgroupMatrix = { offered: [plan.config], plans: { [dtype]: plan }, report: [] };
  const made: Array<{ release(): void }> = [];
  const upload = (shape: number[], seed: number): Tensor => {
    const t = uploadAs(gpu, values(shape.reduce((p, d) => p * d, 1), seed), 'f32', shape, dtype, { label: 'subgroup-matrix self-check' });
    made.push(t);
    return t;
  };
  try {
    const m = 2 * tileM + 3;
    const k = 2 * tileK + 5;
    const n = tileN + 7;
    const x = upload([1, m, k], 1);
    const w = upload([n, k], 2);
    const bias = upload([n], 3);
    const residual = upload([1, m, n], 4);
    const q8 = quantize(w);
    made.push(q8);
    const a = upload([2, tileM + 1, tileK + 3], 5);
    const b = upload([2, tileK + 3, 2 * tileN + 1], 6);
    const cases: Array<[string, (variant: 'small' | typeof SUBGROUP_MATRIX_VARIANT) => Tensor]> = [
      [`linear ${m}×${k}→${n} +bias +residual`, (variant) => linear(x, w, bias, { residual, variant })],
      [`linear ${m}×${k}→${n} q8`, (variant) => linear(x, q8, null, { variant })],
      [`matmul 2×${tileM + 1}×${tileK + 3}·${tileK + 3}×${2 * tileN + 1}`, (variant) => matmul(a, b, { variant })],
    ];
    for (const [label, run] of cases) {
      const want = run('small');
      const got = run(SUBGROUP_MATRIX_VARIANT);
      made.push(want, got);
      const error = maxRelative(await got.read(), await want.read());
      if (!(error <= SELF_CHECK_TOLERANCE[dtype])) return `${label}: max error ${error.toExponential(2)} of the largest value (allowed ${SELF_CHECK_TOLERANCE[dtype].toExponential(2)})`;
    }
    await gpu.sync(); // a WebGPU error raised by the variant (an invalid shader) throws here
    return null;
  } finally {
    for (const t of made) t.release();
    gpu.subgroupMatrix = previous;
  }
}
