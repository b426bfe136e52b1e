// The subgroup-matrix matmul and its guard. lavapipe has no `chromium-experimental-subgroup-
// matrix`, so the kernel's builtins cannot run here: the kernel is tested with its matrix
// operations EMULATED (plans with `emulated: true`: same tiling, staging, bounds and epilogue),
// the real builtins only by the self-check on a GPU (tools/bench-subgroup-matrix.ts). The guard
// is tested on sample configs, with a stand-in self-check, and end to end on lavapipe with an
// adapter that claims the feature (its shader is then rejected: the tiled kernels stay).

import { afterAll, describe, expect, it } from 'vitest';
import { openNodeGpu } from '../../src/gpu/node.js';
import { specialize } from '../../src/gpu/pipeline-cache.js';
import { type Gpu, SUBGROUP_MATRIX_FEATURE, WebGpuRuntime } from '../../src/gpu/runtime.js';
import { uploadAs } from '../../src/ops/cast.js';
import { linear, matmul } from '../../src/ops/matmul.js';
import {
  adapterSubgroupMatrixConfigs,
  pickSubgroupMatrixPlan,
  planTiles,
  SUBGROUP_MATRIX_VARIANT,
  type SubgroupMatrixConfig,
  type SubgroupMatrixLimits,
  type SubgroupMatrixPlan,
  subgroupMatrixFits,
  subgroupMatrixSpecialization,
} from '../../src/ops/matmul-subgroup-matrix.js';
import { dequantize, quantize } from '../../src/ops/quantize.js';
import { checkAgainstTiled, enableSubgroupMatrix, type GuardedGpu, type SelfCheck } from '../../src/ops/subgroup-matrix-check.js';
import type { DType } from '../../src/tensor.js';
import { dtypes, randn, relL2, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, poisonNextOutput } from '../helpers/ops.js';
import { matmulRef } from '../reference/matmul-subgroup-matrix.js';

// The configs Dawn reports: Metal on Apple7+ (PhysicalDeviceMTL.mm), and a subset of what NVIDIA's
// Vulkan driver lists for VK_KHR_cooperative_matrix (subgroup scope, A = B type, C = result type).
const APPLE: SubgroupMatrixConfig[] = [
  { componentType: 'f32', resultComponentType: 'f32', M: 8, N: 8, K: 8 },
  { componentType: 'f16', resultComponentType: 'f16', M: 8, N: 8, K: 8 },
];
const NVIDIA: SubgroupMatrixConfig[] = [
  { componentType: 'f16', resultComponentType: 'f16', M: 16, N: 16, K: 16 },
  { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 16 },
  { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 },
  { componentType: 'u8', resultComponentType: 'u32', M: 16, N: 16, K: 32 },
  { componentType: 'i8', resultComponentType: 'i32', M: 16, N: 16, K: 32 },
];
const LIMITS: SubgroupMatrixLimits = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256 };

function plan(configs: readonly SubgroupMatrixConfig[], dtype: DType, subgroupSize: number, limits = LIMITS): SubgroupMatrixPlan {
  const picked = pickSubgroupMatrixPlan(configs, dtype, subgroupSize, limits);
  if ('reason' in picked) throw new Error(picked.reason);
  return picked.plan;
}

function reason(configs: readonly SubgroupMatrixConfig[], dtype: DType, subgroupSize: number, limits = LIMITS): string {
  const picked = pickSubgroupMatrixPlan(configs, dtype, subgroupSize, limits);
  if ('plan' in picked) throw new Error(`expected no plan, got ${JSON.stringify(picked.plan)}`);
  return picked.reason;
}

describe('pickSubgroupMatrixPlan', () => {
  it("Apple's 8×8×8: f32 tensors on f32, f16 tensors on f32 too (its f16 config accumulates in f16)", () => {
    const p32 = plan(APPLE, 'f32', 32);
    expect(p32).toMatchObject({ config: APPLE[0], rows: 4, cols: 4, steps: 4, subgroupSize: 32 });
    expect(planTiles(p32)).toEqual({ tileM: 32, tileN: 32, tileK: 32, workgroupBytes: (32 * 32 * 2) * 4 + 32 * 32 * 4 });
    expect(plan(APPLE, 'f16', 32).config).toEqual(APPLE[0]);
    expect(reason([APPLE[1]!], 'f16', 32)).toMatch(/f16→f16 8×8×8 accumulates in f16, not f32/);
  });

  it("NVIDIA's 16×16×16 f16→f32 for f16 tensors (the largest f32-result one); nothing for f32 tensors", () => {
    const p = plan(NVIDIA, 'f16', 32);
    expect(p).toMatchObject({ config: NVIDIA[2], rows: 2, cols: 2, steps: 2 });
    expect(planTiles(p).workgroupBytes).toBe((32 * 32 * 2) * 2 + 32 * 32 * 4);
    expect(reason(NVIDIA, 'f32', 32)).toMatch(/no config fits f32 tensors: .*f16 inputs cannot hold f32 values exactly/);
  });

  it('prefers inputs in the tensor dtype, keeps the adapter order among equals', () => {
    const both: SubgroupMatrixConfig[] = [APPLE[0]!, { componentType: 'f16', resultComponentType: 'f32', M: 8, N: 8, K: 8 }];
    expect(plan(both, 'f16', 32).config.componentType).toBe('f16');
    const twins: SubgroupMatrixConfig[] = [{ componentType: 'f16', resultComponentType: 'f32', M: 8, N: 16, K: 16 }, { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 16 }];
    expect(plan(twins, 'f16', 16).config).toEqual(twins[0]);
  });

  it('refuses without configs, without a subgroup size, or beyond the workgroup limits', () => {
    expect(reason([], 'f16', 32)).toBe('the adapter offers no subgroup matrix configs');
    expect(reason(APPLE, 'f32', 0)).toMatch(/unknown subgroup size/);
    expect(reason(APPLE, 'f32', 512)).toMatch(/512-wide subgroup exceeds/);
    expect(reason(APPLE, 'f32', 32, { ...LIMITS, maxComputeWorkgroupStorageSize: 8192 })).toMatch(/stages 12288 bytes, over the 8192-byte workgroup limit/);
    expect(reason([{ componentType: 'f32', resultComponentType: 'f32', M: 2, N: 2, K: 8 }], 'f32', 32)).toMatch(/needs 256 result matrices/);
  });

  it("copies Dawn's config objects (fields as getters) into plain data", () => {
    class DawnConfig {
      get componentType() { return 'f16'; }
      get resultComponentType() { return 'f32'; }
      get M() { return 16; }
      get N() { return 8; }
      get K() { return 16; }
    }
    const info = { subgroupMatrixConfigs: [new DawnConfig()] } as unknown as GPUAdapterInfo;
    expect(adapterSubgroupMatrixConfigs(info)).toEqual([{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 16 }]);
    expect(adapterSubgroupMatrixConfigs({} as GPUAdapterInfo)).toEqual([]);
  });
});

describe('the native kernel as specialized (it compiles only on a GPU)', () => {
  it('enables the extension (and f16) before any declaration, takes the builtins, groups by the tile', () => {
    const plan16 = plan(NVIDIA, 'f16', 32);
    const gpu = { adapterName: 'fake', subgroupMatrix: { offered: NVIDIA, plans: { f16: plan16 }, report: [] } } as unknown as Gpu;
    const spec = subgroupMatrixSpecialization(gpu, { dtype: 'f16', q8: false, fused: false });
    expect([spec.groupRows, spec.groupCols]).toEqual([32, 32]);
    const wgsl = specialize(spec.kernel, spec.defines);
    expect(wgsl).toMatch(/^enable f16;\nenable chromium_experimental_subgroup_matrix;\n(const|alias) /);
    expect(wgsl).toContain('alias C = f16;');
    expect(wgsl).toContain('subgroupMatrixLoad<Left, row_major>(&tileA, at, TILE_K)');
    expect(wgsl).toContain('@workgroup_size(SG)');
    expect(wgsl).toContain('const SG: u32 = 32u;');
    expect(wgsl).not.toContain('//!include');
    expect(wgsl).not.toContain('array<f32, SM_M * SM_K>'); // not the emulation
  });
});

describe('the guard (enableSubgroupMatrix)', () => {
  const fake = (f16: boolean): GuardedGpu => ({ f16, limits: LIMITS, subgroupMatrix: null }) as unknown as GuardedGpu;
  const info = (configs: SubgroupMatrixConfig[], subgroupMaxSize = 32) => ({ subgroupMatrixConfigs: configs, subgroupMaxSize }) as unknown as GPUAdapterInfo;
  const counting = (result: string | null | Error) => {
    const calls: DType[] = [];
    const check: SelfCheck = async (_gpu, p) => {
      calls.push(p.dtype);
      if (result instanceof Error) throw result;
      return result;
    };
    return { calls, check };
  };

  it('feature absent: off with the reason, nothing checked', async () => {
    const { calls, check } = counting(null);
    const state = await enableSubgroupMatrix(fake(true), info(NVIDIA), 'the adapter does not offer it', check);
    expect(state).toEqual({ offered: [], plans: {}, report: ['subgroup-matrix matmul: off (the adapter does not offer it)'] });
    expect(calls).toEqual([]);
  });

  it('no configs, or none that fits: off per dtype, nothing checked', async () => {
    const { calls, check } = counting(null);
    expect((await enableSubgroupMatrix(fake(false), info([]), null, check)).report).toEqual(['subgroup-matrix matmul f32: off (the adapter offers no subgroup matrix configs)']);
    const unfit = await enableSubgroupMatrix(fake(true), info([APPLE[1]!]), null, check);
    expect(unfit.plans).toEqual({});
    expect(unfit.report.join('\n')).toMatch(/f16: off \(no config fits f16 tensors: f16→f16 8×8×8 accumulates in f16/);
    expect(calls).toEqual([]);
  });

  it('a failing or throwing self-check: off, its reason reported', async () => {
    for (const result of ['linear 67×69→39: max error 1.0e+0', new Error('WebGPU error: invalid shader')]) {
      const { calls, check } = counting(result);
      const state = await enableSubgroupMatrix(fake(true), info(APPLE), null, check);
      expect(state.plans).toEqual({});
      expect(calls).toEqual(['f16', 'f32']);
      const why = result instanceof Error ? result.message : result;
      expect(state.report).toEqual([
        `subgroup-matrix matmul f16: off (f32→f32 8×8×8, 32×32×32 tiles, 32-wide subgroups: self-check failed: ${why})`,
        `subgroup-matrix matmul f32: off (f32→f32 8×8×8, 32×32×32 tiles, 32-wide subgroups: self-check failed: ${why})`,
      ]);
    }
  });

  it('a passing self-check enables the plan of each dtype it passed for', async () => {
    const { calls, check } = counting(null);
    const state = await enableSubgroupMatrix(fake(true), info(NVIDIA), null, check);
    expect(calls).toEqual(['f16']);
    expect(state.offered).toEqual(NVIDIA);
    expect(state.plans.f16?.config).toEqual(NVIDIA[2]);
    expect(state.plans.f32).toBeUndefined();
    expect(state.report[0]).toBe('subgroup-matrix matmul f16: on (f16→f32 16×16×16, 32×32×32 tiles, 32-wide subgroups; self-check passed)');
  });
});

const instances: GPU[] = [];

describe('the runtime', () => {
  it('off by default: the feature is not requested and no plan exists', async () => {
    const gpu = await testGpu();
    if (!(gpu instanceof WebGpuRuntime)) throw new Error('testGpu() is not the WebGPU runtime');
    expect(gpu.subgroupMatrix).toBeNull();
    expect(gpu.device.features.has(SUBGROUP_MATRIX_FEATURE)).toBe(false);
    expect(() => linear(Tensor0(gpu), Tensor0(gpu, [3, 4]), null, { variant: SUBGROUP_MATRIX_VARIANT })).toThrow(/subgroup-matrix variant is not enabled for f32 .*not requested/);
  });

  it('on, on lavapipe (no such feature): off, saying so', async () => {
    const gpu = await openNodeGpu({ subgroupMatrix: true });
    try {
      expect(gpu.subgroupMatrix?.plans).toEqual({});
      expect(gpu.subgroupMatrix?.report).toEqual([`subgroup-matrix matmul: off (the adapter does not offer ${SUBGROUP_MATRIX_FEATURE})`]);
    } finally {
      gpu.dispose();
    }
  });

  it('an adapter that claims the feature but cannot compile the kernel: self-check fails, tiled kernels stay and work', async () => {
    // lavapipe dressed up as a GPU with subgroup matrices: the device is opened without the
    // feature (lavapipe would refuse it), so the real kernel's `enable` is rejected.
    const { create } = await import('webgpu');
    // Kept referenced for the file's life: Dawn can crash when an instance is collected while
    // its device lives (src/gpu/node.ts).
    const instance = create([]);
    instances.push(instance);
    const adapter = (await instance.requestAdapter())!;
    const claimed: GPUAdapter = {
      features: new Set([...adapter.features, SUBGROUP_MATRIX_FEATURE]) as unknown as GPUSupportedFeatures,
      limits: adapter.limits,
      info: { description: 'lavapipe claiming subgroup matrices', vendor: 'test', architecture: '', device: '', subgroupMaxSize: 8, subgroupMatrixConfigs: [{ componentType: 'f32', resultComponentType: 'f32', M: 8, N: 8, K: 8 }] } as unknown as GPUAdapterInfo,
      requestDevice: (d?: GPUDeviceDescriptor) => adapter.requestDevice({ ...d, requiredFeatures: [...(d?.requiredFeatures ?? [])].filter((f) => f !== SUBGROUP_MATRIX_FEATURE) }),
    } as unknown as GPUAdapter;
    const gpu = await WebGpuRuntime.open({ requestAdapter: async () => claimed } as unknown as GPU, { subgroupMatrix: true });
    try {
      expect(gpu.subgroupMatrix?.plans).toEqual({});
      const report = gpu.subgroupMatrix!.report.join('\n');
      expect(report).toMatch(/subgroup-matrix matmul f32: off \(f32→f32 8×8×8, 32×32×32 tiles, 8-wide subgroups: self-check failed: .*chromium_experimental_subgroup_matrix/s);
      // The failure was consumed by the guard: the device still computes (tiled kernel, exact).
      const x = uploadAs(gpu, new Float32Array([1, 2, 3]), 'f32', [1, 3], 'f32');
      const w = uploadAs(gpu, new Float32Array([1, 1, 1, 0, 1, 0]), 'f32', [2, 3], 'f32');
      const y = linear(x, w);
      expect(Array.from(await y.read())).toEqual([6, 2]); // small integers: exact in f32
      for (const t of [x, w, y]) t.release();
    } finally {
      gpu.dispose();
    }
  });
});

function Tensor0(gpu: Gpu, shape: number[] = [2, 4]) {
  return uploadAs(gpu, new Float32Array(shape.reduce((p, d) => p * d, 1)), 'f32', shape, 'f32');
}

// The kernel, its builtins emulated. Plans are chosen small (the emulation holds every matrix in
// each invocation) and uneven: RM ≠ RN, several K steps, 8-wide subgroups as lavapipe's.
const EMULATED: Record<DType, SubgroupMatrixPlan> = {
  f32: { dtype: 'f32', config: APPLE[0]!, subgroupSize: 8, rows: 2, cols: 3, steps: 2, emulated: true },
  f16: { dtype: 'f16', config: { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 8 }, subgroupSize: 8, rows: 1, cols: 2, steps: 3, emulated: true },
};
/** f16 tensors staged as f32 (Apple's path for f16): run through the self-check's three cases. */
const F16_ON_F32: SubgroupMatrixPlan = { dtype: 'f16', config: APPLE[0]!, subgroupSize: 8, rows: 2, cols: 2, steps: 1, emulated: true };
// lavapipe, shared by several sessions, spends minutes compiling and running the emulation.
const SLOW = 600_000;

// Tolerances (relative L2 against float64), as test/ops/matmul.test.ts's: f32 accumulates in
// f32 over k ≤ ~300 terms (≈ √k·2⁻²⁴, bound 1e-5); f16 rounds the stored output (2⁻¹¹
// relative, bound 1e-3); inputs are pre-rounded to f16 for the reference. Q8: the reference
// takes the dequantized weight, which f16 staging rounds once more (2⁻¹², within 1e-3).
const TOL: Record<DType, number> = { f32: 1e-5, f16: 1e-3 };

const errors: string[] = [];
afterAll(() => console.log(`subgroup-matrix (emulated) relative L2 errors:\n  ${errors.join('\n  ')}`));

const types = await dtypes();

async function withPlan<T>(gpu: Gpu, p: SubgroupMatrixPlan, run: () => Promise<T>): Promise<T> {
  if (!(gpu instanceof WebGpuRuntime)) throw new Error('not the WebGPU runtime');
  const previous = gpu.subgroupMatrix;
  gpu.subgroupMatrix = { offered: [p.config], plans: { [p.dtype]: p }, report: [] };
  try {
    return await run();
  } finally {
    gpu.subgroupMatrix = previous;
  }
}

function values(random: () => number, n: number, dtype: DType): Float32Array {
  const v = randn(random, n);
  return dtype === 'f16' ? roundToF16(v) : v;
}

describe('matmul-subgroup-matrix kernel (emulated builtins)', () => {
  for (const dtype of types) {
    {
      const p = EMULATED[dtype];
      const { tileM, tileN, tileK } = planTiles(p);
      const name = `${dtype} on ${p.config.componentType} ${p.config.M}×${p.config.N}×${p.config.K}, tile ${tileM}×${tileN}×${tileK}`;

      it(`${name}: Linear, edge shapes, bias / residual, poisoned outputs`, async () => {
        const gpu = await testGpu();
        const random = rng(21);
        // 1s, shapes off every tile multiple, more than one tile each way, k past two K tiles.
        const shapes: Array<[number[], number, number]> = [[[1], 1, 1], [[77], 13, 29], [[2, 3], 7, 1], [[1, 37], 2 * tileK + 5, tileN + 3]];
        let i = 0;
        for (const [lead, k, n] of shapes) {
          const m = lead.reduce((a, b) => a * b, 1);
          const x = values(random, m * k, dtype);
          const w = values(random, n * k, dtype);
          const bias = i % 2 === 0 ? values(random, n, dtype) : null;
          const residual = i % 3 !== 2 ? values(random, m * n, dtype) : null;
          const err = await withPlan(gpu, p, async () => {
            const tx = uploadAs(gpu, x, 'f32', [...lead, k], dtype);
            const tw = uploadAs(gpu, w, 'f32', [n, k], dtype);
            const tb = bias && uploadAs(gpu, bias, 'f32', [n], dtype);
            const tr = residual && uploadAs(gpu, residual, 'f32', [...lead, n], dtype);
            const poisoned = poisonNextOutput(gpu, [...lead, n], dtype);
            const out = linear(tx, tw, tb, { residual: tr, variant: SUBGROUP_MATRIX_VARIANT });
            expect(out.buffer).toBe(poisoned);
            const got = await out.read();
            for (const t of [tx, tw, tb, tr, out]) t?.release();
            return relL2(got, matmulRef(x, w, { batch: 1, m, n, k }, { transposeB: true, bBatched: false, bias, residual }));
          });
          errors.push(`${name} linear ${lead}×${k}→${n}: ${err.toExponential(2)}`);
          expect(err, `${lead}×${k}→${n}`).toBeLessThan(TOL[dtype]); // see TOL
          i++;
        }
      }, SLOW);

      it(`${name}: batched matmul, B both ways round; a Q8 weight`, async () => {
        const gpu = await testGpu();
        const random = rng(22);
        const c = { batch: 3, m: tileM + 5, n: 2 * tileN - 1, k: tileK + 7 };
        for (const transposeB of [false, true]) {
          const a = values(random, c.batch * c.m * c.k, dtype);
          const b = values(random, c.batch * c.k * c.n, dtype);
          const err = await withPlan(gpu, p, async () => {
            const ta = uploadAs(gpu, a, 'f32', [c.batch, c.m, c.k], dtype);
            const tb = uploadAs(gpu, b, 'f32', transposeB ? [c.batch, c.n, c.k] : [c.batch, c.k, c.n], dtype);
            const poisoned = poisonNextOutput(gpu, [c.batch, c.m, c.n], dtype);
            const out = matmul(ta, tb, { transposeB, variant: SUBGROUP_MATRIX_VARIANT });
            expect(out.buffer).toBe(poisoned);
            const got = await out.read();
            for (const t of [ta, tb, out]) t.release();
            return relL2(got, matmulRef(a, b, c, { transposeB, bBatched: true }));
          });
          errors.push(`${name} matmul ${JSON.stringify(c)} transposeB ${transposeB}: ${err.toExponential(2)}`);
          expect(err, `transposeB ${transposeB}`).toBeLessThan(TOL[dtype]); // see TOL
        }
        // Q8: against the float64 product with the weight as quantized (dequantized on the host).
        const [m, k, n] = [19, 45, 23];
        const x = values(random, m * k, dtype);
        const w = values(random, n * k, dtype);
        const err = await withPlan(gpu, p, async () => {
          const tx = uploadAs(gpu, x, 'f32', [m, k], dtype);
          const tw = uploadAs(gpu, w, 'f32', [n, k], dtype);
          const q = quantize(tw);
          const host = await q.read();
          const out = linear(tx, q, null, { variant: SUBGROUP_MATRIX_VARIANT });
          const got = await out.read();
          for (const t of [tx, tw, q, out]) t.release();
          return relL2(got, matmulRef(x, dequantize(host.values, host.scales, [n, k]), { batch: 1, m, n, k }, { transposeB: true, bBatched: false }));
        });
        errors.push(`${name} linear q8 ${m}×${k}→${n}: ${err.toExponential(2)}`);
        expect(err).toBeLessThan(TOL[dtype]); // see TOL
      }, SLOW);
    }

    it(`${dtype}: split over row windows past the binding limit`, async () => {
      // A 2 KiB limit forces windows of a few rows, starting mid-word and off 256 bytes.
      const gpu = await gpuWithBindingLimit(2048);
      const p = EMULATED[dtype];
      const random = rng(23);
      const [m, k, n] = [150, 13, 21];
      const x = values(random, m * k, dtype);
      const w = values(random, n * k, dtype);
      const bias = values(random, n, dtype);
      const err = await withPlan(gpu, p, async () => {
        const tx = uploadAs(gpu, x, 'f32', [m, k], dtype);
        const tw = uploadAs(gpu, w, 'f32', [n, k], dtype);
        const tb = uploadAs(gpu, bias, 'f32', [n], dtype);
        const out = linear(tx, tw, tb, { variant: SUBGROUP_MATRIX_VARIANT });
        const got = await out.read();
        for (const t of [tx, tw, tb, out]) t.release();
        return relL2(got, matmulRef(x, w, { batch: 1, m, n, k }, { transposeB: true, bBatched: false, bias }));
      });
      errors.push(`${dtype} windows ${m}×${k}→${n}: ${err.toExponential(2)}`);
      expect(err).toBeLessThan(TOL[dtype]); // see TOL
    }, SLOW);

    const checked = dtype === 'f16' ? F16_ON_F32 : EMULATED.f32;
    it(`${dtype}: the self-check passes with a correct (emulated) kernel on ${checked.config.componentType} inputs`, async () => {
      const gpu = await testGpu();
      if (!(gpu instanceof WebGpuRuntime)) throw new Error('not the WebGPU runtime');
      expect(await checkAgainstTiled(gpu, checked)).toBeNull();
      expect(gpu.subgroupMatrix).toBeNull(); // restored
    }, SLOW);
  }

  it('refuses fused calls and dtypes without a plan; only unfused calls of a planned dtype are candidates', async () => {
    const gpu = await testGpu();
    const p = EMULATED.f32;
    await withPlan(gpu, p, async () => {
      const x = Tensor0(gpu, [2, 8]);
      const w = Tensor0(gpu, [8, 8]);
      expect(() => linear(x, w, null, { geglu: true, variant: SUBGROUP_MATRIX_VARIANT })).toThrow(/no row norm, GEGLU or image layout/);
      expect(() => linear(x, w, null, { normEps: 1e-5, variant: SUBGROUP_MATRIX_VARIANT })).toThrow(/no row norm, GEGLU or image layout/);
      expect(subgroupMatrixFits(gpu, { dtype: 'f32', q8: false, fused: false })).toBe(true);
      expect(subgroupMatrixFits(gpu, { dtype: 'f32', q8: true, fused: false })).toBe(true);
      expect(subgroupMatrixFits(gpu, { dtype: 'f32', q8: false, fused: true })).toBe(false);
      expect(subgroupMatrixFits(gpu, { dtype: 'f16', q8: false, fused: false })).toBe(false);
      x.release();
      w.release();
    });
  });
});
