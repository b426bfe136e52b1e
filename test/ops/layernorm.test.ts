import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/runtime.js';
import { LAYERNORM_VARIANTS, layerNorm, type LayerNormVariant } from '../../src/ops/layernorm.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { layerNormRef } from '../reference/layernorm.js';
import { dtypes, reductionGpus, relL2 } from '../helpers/gpu.js';
import { affineInputs, gpuWithBindingLimit, poisonNextOutput } from '../helpers/ops.js';
import { observedCalls, runEveryCandidate } from '../helpers/tunable-calls.js';

// f32: the mean's own f32 rounding limits (x − mean) to ~6e-8·mean/std relative error (≈2e-6
// measured at mean/std = 100); the two-pass variance adds less, so 1e-5. (E[x²] − mean² in f32
// loses ~6e-8·(mean/std)²: 2e-4 to 4e-4 measured there.) f16: the output's storage rounding
// (≈3e-4 rms) dominates, so 1e-3.
const TOLERANCE: Record<DType, number> = { f32: 1e-5, f16: 1e-3 };

interface LayerCase {
  readonly name: string;
  readonly shape: number[];
  readonly mean: number;
  readonly std: number;
}

async function runLayerNorm(gpu: Gpu, c: LayerCase, dtype: DType, seed: number, variant?: LayerNormVariant): Promise<number> {
  const C = c.shape[c.shape.length - 1]!;
  const { xs, x, gs, g, bs, b } = affineInputs(gpu, dtype, c.shape, C, seed, c.mean, c.std);
  const poisoned = poisonNextOutput(gpu, c.shape, dtype);
  const out = layerNorm(x, g, b, { eps: 1e-5, variant });
  expect(out.buffer).toBe(poisoned);
  const got = await out.read();
  for (const t of [x, g, b, out]) t.release();
  return relL2(got, layerNormRef(xs, C, 1e-5, gs, bs));
}

/** The variants a device can run: the `-sg` ones need `subgroups`. */
const variantsOn = (gpu: Gpu): LayerNormVariant[] => LAYERNORM_VARIANTS.filter((v) => gpu.subgroups || !v.endsWith('-sg'));

const layerCases: LayerCase[] = [
  { name: 'tokens of 320 (UNet level 0)', shape: [2, 7, 320], mean: 0, std: 1 },
  { name: 'mean 50, std 5, 77 tokens of 1280', shape: [1, 77, 1280], mean: 50, std: 5 },
  { name: 'mean 100, std 1 (E[x²] − mean² in f32 would fail)', shape: [2, 9, 640], mean: 100, std: 1 },
  { name: 'odd width below the workgroup size', shape: [5, 33], mean: 2, std: 0.5 },
  { name: 'odd width over 2048', shape: [3, 2049], mean: -50, std: 5 },
  { name: 'width 1 (zero variance gives beta)', shape: [6, 1], mean: 3, std: 1 },
];

describe('layerNorm', () => {
  for (const c of layerCases) {
    it(c.name, async () => {
      for (const { name, gpu } of await reductionGpus()) {
        for (const dtype of await dtypes()) {
          for (const variant of variantsOn(gpu)) {
            const err = await runLayerNorm(gpu, c, dtype, c.name.length * 17, variant);
            expect(err, `${name} ${dtype} ${variant} relL2`).toBeLessThan(TOLERANCE[dtype]);
          }
        }
      }
    });
  }

  it('offers tune the variants this device runs, the heuristic among them, each runnable on prepared inputs', async () => {
    for (const { name, gpu } of await reductionGpus()) {
      const x = Tensor.empty(gpu, [2, 5, 40], 'f32');
      const g = Tensor.empty(gpu, [40], 'f32');
      const calls = observedCalls(gpu, () => layerNorm(x, g, g, { eps: 1e-5 }).release());
      expect(calls.map((c) => c.candidates), name).toEqual([variantsOn(gpu)]);
      await runEveryCandidate(gpu, calls[0]!);
      for (const t of [x, g]) t.release();
    }
  });

  it('splits rows over windows when the input exceeds the binding limit (limit shrunk to test size)', async () => {
    for (const dtype of await dtypes()) {
      // 1000 elements per window: 3–4 rows of 257, starting at misaligned offsets.
      const gpu = await gpuWithBindingLimit(1000 * (dtype === 'f32' ? 4 : 2));
      for (const variant of variantsOn(gpu)) {
        const err = await runLayerNorm(gpu, { name: 'split', shape: [3, 5, 257], mean: 50, std: 5 }, dtype, 12, variant);
        expect(err, `${dtype} ${variant} relL2`).toBeLessThan(TOLERANCE[dtype]);
      }
    }
  });
});
