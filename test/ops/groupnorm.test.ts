import { describe, expect, it } from 'vitest';
import { RecordingGpu } from '../../src/gpu/recording.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { GROUPNORM_VARIANTS, groupNorm, type GroupNormVariant } from '../../src/ops/groupnorm.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { groupNormRef } from '../reference/groupnorm.js';
import { dtypes, reductionGpus, relL2, testGpu } from '../helpers/gpu.js';
import { affineInputs, gpuWithBindingLimit, poisonNextOutput } from '../helpers/ops.js';
import { observedCalls, runEveryCandidate } from '../helpers/tunable-calls.js';

// f32: the mean's own f32 rounding limits (x − mean) to ~6e-8·mean/std relative error (≈2e-6
// measured at mean/std = 100); the two-pass variance adds less, so 1e-5. (E[x²] − mean² in f32
// loses ~6e-8·(mean/std)²: 2e-4 to 4e-4 measured there.) f16: the output's storage rounding
// (≈3e-4 rms) dominates, so 1e-3.
const TOLERANCE: Record<DType, number> = { f32: 1e-5, f16: 1e-3 };

interface GroupCase {
  readonly name: string;
  readonly shape: number[];
  readonly groups: number;
  readonly eps: number;
  readonly silu: boolean;
  readonly mean: number;
  readonly std: number;
}

async function runGroupNorm(gpu: Gpu, c: GroupCase, dtype: DType, seed: number, variant?: GroupNormVariant): Promise<number> {
  const { xs, x, gs, g, bs, b } = affineInputs(gpu, dtype, c.shape, c.shape[1]!, seed, c.mean, c.std);
  const poisoned = poisonNextOutput(gpu, c.shape, dtype);
  const out = groupNorm(x, g, b, { groups: c.groups, eps: c.eps, silu: c.silu, variant });
  expect(out.buffer).toBe(poisoned);
  expect(out.shape).toEqual(c.shape);
  const got = await out.read();
  for (const t of [x, g, b, out]) t.release();
  return relL2(got, groupNormRef(xs, c.shape, c.groups, c.eps, gs, bs, c.silu));
}

/** The variants a device can run: the `-sg` ones need `subgroups`. */
const variantsOn = (gpu: Gpu): GroupNormVariant[] => GROUPNORM_VARIANTS.filter((v) => gpu.subgroups || !v.endsWith('-sg'));

const groupCases: GroupCase[] = [
  { name: 'odd group size (3 channels of 7×9), two images', shape: [2, 12, 7, 9], groups: 4, eps: 1e-5, silu: false, mean: 0, std: 1 },
  { name: 'fused SiLU, eps 1e-6, 5 groups of 3', shape: [1, 15, 5, 11], groups: 5, eps: 1e-6, silu: true, mean: 0.3, std: 2 },
  { name: 'mean 50, std 5, groups of 12261 elements (several chunks, ragged tail)', shape: [2, 6, 61, 67], groups: 2, eps: 1e-5, silu: false, mean: 50, std: 5 },
  { name: 'mean 50, std 5, with SiLU', shape: [1, 8, 33, 17], groups: 4, eps: 1e-6, silu: true, mean: 50, std: 5 },
  { name: 'mean 100, std 1 (E[x²] − mean² in f32 would fail)', shape: [1, 10, 29, 31], groups: 2, eps: 1e-5, silu: false, mean: 100, std: 1 },
  { name: '1-D spatial (B, C, L)', shape: [3, 10, 37], groups: 5, eps: 1e-5, silu: false, mean: -1, std: 3 },
  { name: 'no spatial dims (B, C), one group', shape: [4, 9], groups: 1, eps: 1e-5, silu: true, mean: 0, std: 1 },
  { name: 'one channel per group (instance norm)', shape: [2, 7, 6, 5], groups: 7, eps: 1e-5, silu: false, mean: 0, std: 0.01 },
  // S % 8 = 0: f16 in words of 8 (the f16x8 words), f32 in pairs.
  { name: 'S = 48: 8 f16 per word, mean 50, std 5, with SiLU, two images', shape: [2, 12, 8, 6], groups: 4, eps: 1e-6, silu: true, mean: 50, std: 5 },
  { name: 'S = 1000: 8 f16 per word, groups of 3000 elements (two chunks, ragged tail)', shape: [1, 9, 40, 25], groups: 3, eps: 1e-5, silu: false, mean: -3, std: 0.5 },
];

describe('groupNorm', () => {
  for (const c of groupCases) {
    it(c.name, async () => {
      for (const { name, gpu } of await reductionGpus()) {
        for (const dtype of await dtypes()) {
          for (const variant of variantsOn(gpu)) {
            const err = await runGroupNorm(gpu, c, dtype, c.name.length * 31 + c.shape.length, variant);
            expect(err, `${name} ${dtype} ${variant} relL2`).toBeLessThan(TOLERANCE[dtype]);
          }
        }
      }
    });
  }

  it('splits windows mid-group or between rows when the input exceeds the binding limit (limit shrunk to test size)', async () => {
    // Groups of 8174 elements (4 chunks, words of 1), and of 5120 (3 chunks, f16 in words of 8).
    const split: GroupCase[] = [
      { name: 'split', shape: [2, 6, 61, 67], groups: 3, eps: 1e-5, silu: true, mean: 50, std: 5 },
      { name: 'split, S % 8 = 0', shape: [2, 6, 64, 40], groups: 3, eps: 1e-5, silu: true, mean: 2, std: 3 },
    ];
    for (const dtype of await dtypes()) {
      // 5000 elements per window: every group spans several windows.
      const gpu = await gpuWithBindingLimit(5000 * (dtype === 'f32' ? 4 : 2));
      const chunked = variantsOn(gpu).filter((v) => v.startsWith('chunks'));
      expect(chunked.length).toBeGreaterThan(0);
      for (const c of split) {
        for (const variant of chunked) {
          const err = await runGroupNorm(gpu, c, dtype, 11, variant);
          expect(err, `${c.name} ${dtype} ${variant} relL2`).toBeLessThan(TOLERANCE[dtype]);
        }
      }
      const c = split[0]!;
      // A row does not fit one window there: the one-pass variants are refused, not run wrong.
      const [x, g] = [Tensor.empty(gpu, c.shape, dtype), Tensor.empty(gpu, [6], dtype)];
      expect(() => groupNorm(x, g, g, { groups: 3, eps: 1e-5, variant: 'rows-64' })).toThrow(/variant rows-64 is not valid/);
      for (const t of [x, g]) t.release();
      // 9 rows of 800 elements: whole rows per window, 2 windows, for every variant.
      const rows: GroupCase = { name: 'rows', shape: [3, 6, 20, 20], groups: 3, eps: 1e-5, silu: true, mean: -20, std: 3 };
      for (const variant of variantsOn(gpu)) {
        const err = await runGroupNorm(gpu, rows, dtype, 12, variant);
        expect(err, `${dtype} ${variant} whole rows per window relL2`).toBeLessThan(TOLERANCE[dtype]);
      }
    }
  });

  it('reads and writes the widest word no channel splits: 8 f16 where S % 8 = 0, else pairs where S is even', () => {
    const words = (shape: number[], dtype: DType): string => {
      const gpu = new RecordingGpu();
      const [x, g] = [Tensor.empty(gpu, shape, dtype), Tensor.empty(gpu, [shape[1]!], dtype)];
      groupNorm(x, g, g, { groups: 2, eps: 1e-5, variant: 'chunks-64' }).release();
      const kernels = new Set(gpu.dispatches.map((d) => `${d.kernel} ${d.defines.WIDTH} ${d.defines.W}`));
      expect(kernels.size).toBe(1);
      return [...kernels][0]!;
    };
    expect(words([1, 4, 8, 6], 'f16')).toBe('groupnorm-f16x8 8 vec4<u32>');
    expect(words([1, 4, 4, 5], 'f16')).toBe('groupnorm 2 u32');
    expect(words([1, 4, 3, 5], 'f16')).toBe('groupnorm 1 f16');
    expect(words([1, 4, 8, 6], 'f32')).toBe('groupnorm 2 vec2<f32>');
    expect(words([1, 4, 3, 5], 'f32')).toBe('groupnorm 1 f32');
  });

  it('offers tune the variants this device runs, the heuristic among them, each runnable on prepared inputs', async () => {
    for (const { name, gpu } of await reductionGpus()) {
      const x = Tensor.empty(gpu, [1, 12, 10, 10], 'f32');
      const g = Tensor.empty(gpu, [12], 'f32');
      const calls = observedCalls(gpu, () => groupNorm(x, g, g, { groups: 4, eps: 1e-5, silu: true }).release());
      expect(calls.map((c) => c.candidates), name).toEqual([variantsOn(gpu)]);
      await runEveryCandidate(gpu, calls[0]!);
      for (const t of [x, g]) t.release();
    }
  });

  it('rejects groups that do not divide the channels', async () => {
    const gpu = await testGpu();
    const x = Tensor.empty(gpu, [1, 10, 4, 4], 'f32');
    const g = Tensor.empty(gpu, [10], 'f32');
    expect(() => groupNorm(x, g, g, { groups: 4, eps: 1e-5 })).toThrow('groupNorm: 10 channels of x (1, 10, 4, 4) do not split into 4 groups');
    const g16 = Tensor.empty(gpu, [12], 'f32');
    expect(() => groupNorm(x, g16, g, { groups: 5, eps: 1e-5 })).toThrow('groupNorm: gamma (12) f32 must be (10) f32 for x (1, 10, 4, 4)');
    for (const t of [x, g, g16]) t.release();
  });
});

