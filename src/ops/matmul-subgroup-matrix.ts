// The subgroup-matrix matmul (kernels/matmul-subgroup-matrix.wgsl): the tensor-core path of
// Dawn's `chromium-experimental-subgroup-matrix` feature, a variant of src/ops/matmul.ts that
// the launcher dispatches over the same windows and bindings as the tiled kernel.
//
// Guarded three ways, so an untested path never produces a wrong image:
// 1. opt-in (GpuOptions.subgroupMatrix, CLI --subgroup-matrix); off by default;
// 2. the adapter must offer a config that fits (pickSubgroupMatrixPlan: f32 results, inputs
//    that hold the tensor dtype exactly, tiles within the device's limits);
// 3. a start-up self-check (src/ops/subgroup-matrix-check.ts) runs the kernel against the tiled
//    one on small awkward problems; only a plan that passes is put on the Gpu.
// It cannot run on lavapipe (no `chromium-experimental-subgroup-matrix`; Tint there rejects the
// `enable` directive), so the tests run the kernel with EMULATED matrix operations
// (kernels/include/subgroup-matrix-emulated.wgsl: the same tiling, staging and epilogue, the
// matrix builtins replaced by loops), and the builtins themselves are checked on a GPU by the
// self-check (`npm run bench:subgroup-matrix`, tools/bench-subgroup-matrix.ts).

import emulatedOps from '../../kernels/include/subgroup-matrix-emulated.wgsl';
import nativeOps from '../../kernels/include/subgroup-matrix.wgsl';
import source from '../../kernels/matmul-subgroup-matrix.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import type { Gpu } from '../gpu/runtime.js';
import type { DType } from '../tensor.js';
import { type MatmulSpecialization, matmulLayout } from './matmul-gemv.js';

/** The matmul variant name (src/ops/matmul.ts). */
export const SUBGROUP_MATRIX_VARIANT = 'subgroup-matrix';

/** GPUSubgroupMatrixComponentType. */
export type SubgroupMatrixComponent = 'f32' | 'f16' | 'u32' | 'i32' | 'u8' | 'i8';

/** One GPUSubgroupMatrixConfig (adapter.info.subgroupMatrixConfigs), as plain data: left M×K
 *  by right K×N into an M×N result, per subgroup. */
export interface SubgroupMatrixConfig {
  readonly componentType: SubgroupMatrixComponent;
  readonly resultComponentType: SubgroupMatrixComponent;
  readonly M: number;
  readonly N: number;
  readonly K: number;
}

/** A config specialised into the kernel's tiling for one tensor dtype. */
export interface SubgroupMatrixPlan {
  readonly dtype: DType;
  readonly config: SubgroupMatrixConfig;
  /** Invocations per workgroup: the adapter's subgroupMaxSize (Dawn requires a multiple). */
  readonly subgroupSize: number;
  /** Result matrices per workgroup along m and n, and K steps per staged tile. */
  readonly rows: number;
  readonly cols: number;
  readonly steps: number;
  /** Run the kernel with the matrix builtins emulated by loops (any adapter runs it: how the
   *  tests exercise the tiling on lavapipe); never chosen by pickSubgroupMatrixPlan. */
  readonly emulated?: boolean;
}

/** What the Gpu carries: the plan per dtype that passed the self-check (none: tiled kernels). */
export interface SubgroupMatrixState {
  /** What the adapter offers (adapter.info.subgroupMatrixConfigs; none without the feature). */
  readonly offered: readonly SubgroupMatrixConfig[];
  readonly plans: Partial<Record<DType, SubgroupMatrixPlan>>;
  /** One line per dtype saying what was enabled, or why not (GpuOptions.verbose prints it). */
  readonly report: readonly string[];
}

/** The limits the tiling has to respect. */
export type SubgroupMatrixLimits = Pick<GPUSupportedLimits, 'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX'>;

/** Output tile per workgroup aimed at (rows × cols result matrices cover at least this), and
 *  k values staged per step: 32×32 outputs, 32 k, as the tiled kernel's small tile. */
const TILE_TARGET = 32;
const K_TARGET = 32;
/** Result matrices per subgroup at most: each holds M·N / subgroupSize accumulators per invocation. */
const MAX_RESULTS = 16;

const BYTES: Partial<Record<SubgroupMatrixComponent, number>> = { f32: 4, f16: 2 };

/** Why `config` cannot serve `dtype` tensors, or null when it can. */
function unfit(config: SubgroupMatrixConfig, dtype: DType): string | null {
  // Matmuls accumulate in f32 (docs: STYLE 11); an f16 result would round every partial sum.
  if (config.resultComponentType !== 'f32') return `accumulates in ${config.resultComponentType}, not f32`;
  // Staging converts the tensor into the component type: only exact conversions are taken.
  const exact = dtype === 'f16' ? ['f16', 'f32'] : ['f32'];
  if (!exact.includes(config.componentType)) return `${config.componentType} inputs cannot hold ${dtype} values exactly`;
  if (![config.M, config.N, config.K].every((d) => Number.isInteger(d) && d > 0)) return 'has a non-positive size';
  return null;
}

function describeConfig(c: SubgroupMatrixConfig): string {
  return `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`;
}

/** The workgroup memory a plan stages: A (tileM × tileK) and B (tileK × tileN) in the component
 *  type, C (tileM × tileN) in f32. */
export function planTiles(p: SubgroupMatrixPlan): { tileM: number; tileN: number; tileK: number; workgroupBytes: number } {
  const tileM = p.rows * p.config.M;
  const tileN = p.cols * p.config.N;
  const tileK = p.steps * p.config.K;
  const bytes = BYTES[p.config.componentType] ?? 4;
  return { tileM, tileN, tileK, workgroupBytes: (tileM * tileK + tileK * tileN) * bytes + tileM * tileN * 4 };
}

/**
 * The plan for `dtype` tensors from the adapter's configs, or the reason none fits. Preferred:
 * inputs in the tensor's own dtype (f16 tensor cores for f16), then the largest M·N·K, then the
 * adapter's order (Vulkan lists its preferred configs first).
 */
export function pickSubgroupMatrixPlan(
  configs: readonly SubgroupMatrixConfig[],
  dtype: DType,
  subgroupSize: number,
  limits: SubgroupMatrixLimits,
): { plan: SubgroupMatrixPlan } | { reason: string } {
  if (configs.length === 0) return { reason: 'the adapter offers no subgroup matrix configs' };
  if (!(Number.isInteger(subgroupSize) && subgroupSize > 0)) return { reason: `unknown subgroup size (${subgroupSize})` };
  if (subgroupSize > limits.maxComputeInvocationsPerWorkgroup || subgroupSize > limits.maxComputeWorkgroupSizeX) {
    return { reason: `a workgroup of one ${subgroupSize}-wide subgroup exceeds the device's workgroup limits` };
  }
  const rejected: string[] = [];
  const fitting: SubgroupMatrixPlan[] = [];
  for (const config of configs) {
    const why = unfit(config, dtype);
    if (why) {
      rejected.push(`${describeConfig(config)} ${why}`);
      continue;
    }
    const rows = Math.max(1, Math.ceil(TILE_TARGET / config.M));
    const cols = Math.max(1, Math.ceil(TILE_TARGET / config.N));
    const plan: SubgroupMatrixPlan = { dtype, config, subgroupSize, rows, cols, steps: Math.max(1, Math.ceil(K_TARGET / config.K)) };
    const { workgroupBytes } = planTiles(plan);
    if (rows * cols > MAX_RESULTS) rejected.push(`${describeConfig(config)} needs ${rows * cols} result matrices per subgroup (at most ${MAX_RESULTS})`);
    else if (workgroupBytes > limits.maxComputeWorkgroupStorageSize) rejected.push(`${describeConfig(config)} stages ${workgroupBytes} bytes, over the ${limits.maxComputeWorkgroupStorageSize}-byte workgroup limit`);
    else fitting.push(plan);
  }
  const volume = (p: SubgroupMatrixPlan): number => p.config.M * p.config.N * p.config.K;
  // Array.prototype.sort is stable: equal plans keep the adapter's order.
  const best = fitting.sort((p, q) => Number(q.config.componentType === dtype) - Number(p.config.componentType === dtype) || volume(q) - volume(p))[0];
  return best ? { plan: best } : { reason: `no config fits ${dtype} tensors: ${rejected.join('; ')}` };
}

/** The configs of an adapter's GPUAdapterInfo (absent before Dawn added them: none). */
export function adapterSubgroupMatrixConfigs(info: GPUAdapterInfo | undefined): SubgroupMatrixConfig[] {
  const raw = (info as { subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[] } | undefined)?.subgroupMatrixConfigs ?? [];
  // Dawn's config objects expose their fields as getters: copy them into plain data.
  return raw.map((c) => ({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: Number(c.M), N: Number(c.N), K: Number(c.K) }));
}

const nativeKernel = defineKernel({ name: 'matmul-subgroup-matrix', source: `${nativeOps}\n${source}`, layout: matmulLayout });
/** The same kernel with the matrix builtins emulated by loops: how the tests run it on lavapipe. */
const emulatedKernel = defineKernel({ name: 'matmul-subgroup-matrix-emulated', source: `${emulatedOps}\n${source}`, layout: matmulLayout });

/** What a call must not use: the kernel has bias, residual, Q8 weights, batches and B either
 *  way round, but none of the tiled kernel's other fusions. */
export interface SubgroupMatrixCall {
  readonly dtype: DType;
  readonly q8: boolean;
  /** A row norm, GEGLU or an image layout (LinearOptions): not in this kernel. */
  readonly fused: boolean;
}

/** Whether `gpu` runs the subgroup-matrix variant for such a call: a candidate for tuning. */
export function subgroupMatrixFits(gpu: Gpu, call: SubgroupMatrixCall): boolean {
  return !call.fused && gpu.subgroupMatrix?.plans[call.dtype] !== undefined;
}

/** The kernel specialization for `call` with `gpu`'s checked plan for its dtype. */
export function subgroupMatrixSpecialization(gpu: Gpu, call: SubgroupMatrixCall): MatmulSpecialization {
  if (call.fused) throw new Error('matmul: the subgroup-matrix variant has no row norm, GEGLU or image layout (use a tile)');
  const plan = gpu.subgroupMatrix?.plans[call.dtype];
  if (!plan) {
    throw new Error(`matmul: the subgroup-matrix variant is not enabled for ${call.dtype} on ${gpu.adapterName} (GpuOptions.subgroupMatrix; ${gpu.subgroupMatrix?.report.join(' ') ?? 'not requested'})`);
  }
  const { tileM, tileN } = planTiles(plan);
  const c = plan.config;
  return {
    kernel: plan.emulated ? emulatedKernel : nativeKernel,
    defines: {
      T: call.dtype, AB: `vec4<${call.dtype}>`, C: c.componentType, SM_M: c.M, SM_N: c.N, SM_K: c.K, RM: plan.rows, RN: plan.cols, STEPS: plan.steps,
      SG: plan.subgroupSize, Q8: call.q8, SUBGROUP_MATRIX: plan.emulated !== true,
    },
    groupRows: tileM,
    groupCols: tileN,
  };
}
