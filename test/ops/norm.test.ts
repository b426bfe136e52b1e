import { describe, expect, it } from 'vitest';
import { groupNorm, layerNorm } from '../../src/ops/norm.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { dtypes, randn, relL2, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { poisonNextOutput, withBindingLimit } from '../helpers/ops.js';

/** The specification: per (row of n elements) mean and biased variance in float64, then the affine. */
function normalizeRows(x: Float32Array, rows: number, n: number, eps: number, affine: (row: number, i: number, v: number) => number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[r * n + i]!;
    mean /= n;
    let variance = 0;
    for (let i = 0; i < n; i++) variance += (x[r * n + i]! - mean) ** 2;
    variance /= n;
    for (let i = 0; i < n; i++) out[r * n + i] = affine(r, i, (x[r * n + i]! - mean) / Math.sqrt(variance + eps));
  }
  return out;
}
function groupNormRef(x: Float32Array, [B, C, ...spatial]: readonly number[], G: number, eps: number, gamma: Float32Array, beta: Float32Array, silu: boolean): Float64Array {
  const S = spatial.reduce((a, b) => a * b, 1);
  const cpg = C! / G;
  return normalizeRows(x, B! * G, cpg * S, eps, (row, i, v) => {
    const c = (row % G) * cpg + Math.floor(i / S);
    const y = v * gamma[c]! + beta[c]!;
    return silu ? y / (1 + Math.exp(-y)) : y;
  });
}

function layerNormRef(x: Float32Array, C: number, eps: number, gamma: Float32Array, beta: Float32Array): Float64Array {
  return normalizeRows(x, x.length / C, C, eps, (_, i, v) => v * gamma[i]! + beta[i]!);
}

// f32: the mean's own f32 rounding limits (x − mean) to ~6e-8·mean/std relative error (≈2e-6
// measured at mean/std = 100); the two-pass variance adds less, so 1e-5. (E[x²] − mean² in f32
// loses ~6e-8·(mean/std)²: 2e-4 to 4e-4 measured there.) f16: the output's storage rounding
// (≈3e-4 rms) dominates, so 1e-3.
const TOLERANCE: Record<DType, number> = { f32: 1e-5, f16: 1e-3 };

interface Inputs {
  xs: Float32Array;
  x: Tensor;
  gs: Float32Array;
  g: Tensor;
  bs: Float32Array;
  b: Tensor;
}

/** x ~ N(mean, std²); gamma ~ 1 + N(0, 0.15²), beta ~ N(0, 0.1²) as in the synthetic SDXL weights. */
async function inputs(dtype: DType, shape: number[], channels: number, seed: number, mean: number, std: number): Promise<Inputs> {
  const gpu = await testGpu();
  const random = rng(seed);
  const round = (v: Float32Array): Float32Array => (dtype === 'f16' ? roundToF16(v) : v);
  const xs = round(randn(random, shape.reduce((a, b) => a * b, 1), std).map((v) => v + mean));
  const gs = round(randn(random, channels, 0.15).map((v) => v + 1));
  const bs = round(randn(random, channels, 0.1));
  return {
    xs, gs, bs,
    x: Tensor.upload(gpu, xs, 'f32', shape, dtype),
    g: Tensor.upload(gpu, gs, 'f32', [channels], dtype),
    b: Tensor.upload(gpu, bs, 'f32', [channels], dtype),
  };
}

interface GroupCase {
  readonly name: string;
  readonly shape: number[];
  readonly groups: number;
  readonly eps: number;
  readonly silu: boolean;
  readonly mean: number;
  readonly std: number;
}

async function runGroupNorm(c: GroupCase, dtype: DType, seed: number, limitBytes?: number): Promise<number> {
  const gpu = await testGpu();
  const { xs, x, gs, g, bs, b } = await inputs(dtype, c.shape, c.shape[1]!, seed, c.mean, c.std);
  const poisoned = poisonNextOutput(gpu, c.shape, dtype);
  const run = (): Tensor => groupNorm(x, g, b, { groups: c.groups, eps: c.eps, silu: c.silu });
  const out = limitBytes === undefined ? run() : await withBindingLimit(gpu, limitBytes, run);
  expect(out.buffer).toBe(poisoned);
  expect(out.shape).toEqual(c.shape);
  const got = await out.read();
  for (const t of [x, g, b, out]) t.release();
  return relL2(got, groupNormRef(xs, c.shape, c.groups, c.eps, gs, bs, c.silu));
}

const groupCases: GroupCase[] = [
  { name: 'odd group size (3 channels of 7×9), two images', shape: [2, 12, 7, 9], groups: 4, eps: 1e-5, silu: false, mean: 0, std: 1 },
  { name: 'fused SiLU, eps 1e-6, 5 groups of 3', shape: [1, 15, 5, 11], groups: 5, eps: 1e-6, silu: true, mean: 0.3, std: 2 },
  { name: 'mean 50, std 5, groups of 12261 elements (several chunks, ragged tail)', shape: [2, 6, 61, 67], groups: 2, eps: 1e-5, silu: false, mean: 50, std: 5 },
  { name: 'mean 50, std 5, with SiLU', shape: [1, 8, 33, 17], groups: 4, eps: 1e-6, silu: true, mean: 50, std: 5 },
  { name: 'mean 100, std 1 (E[x²] − mean² in f32 would fail)', shape: [1, 10, 29, 31], groups: 2, eps: 1e-5, silu: false, mean: 100, std: 1 },
  { name: '1-D spatial (B, C, L)', shape: [3, 10, 37], groups: 5, eps: 1e-5, silu: false, mean: -1, std: 3 },
  { name: 'no spatial dims (B, C), one group', shape: [4, 9], groups: 1, eps: 1e-5, silu: true, mean: 0, std: 1 },
  { name: 'one channel per group (instance norm)', shape: [2, 7, 6, 5], groups: 7, eps: 1e-5, silu: false, mean: 0, std: 0.01 },
];

describe('groupNorm', () => {
  for (const c of groupCases) {
    it(c.name, async () => {
      for (const dtype of await dtypes()) {
        const err = await runGroupNorm(c, dtype, c.name.length * 31 + c.shape.length);
        expect(err, `${dtype} relL2`).toBeLessThan(TOLERANCE[dtype]);
      }
    });
  }

  it('splits windows mid-group when the input exceeds the binding limit (limit shrunk to test size)', async () => {
    const c: GroupCase = { name: 'split', shape: [2, 6, 61, 67], groups: 3, eps: 1e-5, silu: true, mean: 50, std: 5 };
    for (const dtype of await dtypes()) {
      // 5000 elements per window: the 8174-element groups (4 chunks each) span several windows.
      const err = await runGroupNorm(c, dtype, 11, 5000 * (dtype === 'f32' ? 4 : 2));
      expect(err, `${dtype} relL2`).toBeLessThan(TOLERANCE[dtype]);
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

interface LayerCase {
  readonly name: string;
  readonly shape: number[];
  readonly mean: number;
  readonly std: number;
}

async function runLayerNorm(c: LayerCase, dtype: DType, seed: number, limitBytes?: number): Promise<number> {
  const gpu = await testGpu();
  const C = c.shape[c.shape.length - 1]!;
  const { xs, x, gs, g, bs, b } = await inputs(dtype, c.shape, C, seed, c.mean, c.std);
  const poisoned = poisonNextOutput(gpu, c.shape, dtype);
  const run = (): Tensor => layerNorm(x, g, b, { eps: 1e-5 });
  const out = limitBytes === undefined ? run() : await withBindingLimit(gpu, limitBytes, run);
  expect(out.buffer).toBe(poisoned);
  const got = await out.read();
  for (const t of [x, g, b, out]) t.release();
  return relL2(got, layerNormRef(xs, C, 1e-5, gs, bs));
}

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
      for (const dtype of await dtypes()) {
        const err = await runLayerNorm(c, dtype, c.name.length * 17);
        expect(err, `${dtype} relL2`).toBeLessThan(TOLERANCE[dtype]);
      }
    });
  }

  it('splits rows over windows when the input exceeds the binding limit (limit shrunk to test size)', async () => {
    for (const dtype of await dtypes()) {
      // 1000 elements per window: 3–4 rows of 257, starting at misaligned offsets.
      const err = await runLayerNorm({ name: 'split', shape: [3, 5, 257], mean: 50, std: 5 }, dtype, 12, 1000 * (dtype === 'f32' ? 4 : 2));
      expect(err, `${dtype} relL2`).toBeLessThan(TOLERANCE[dtype]);
    }
  });
});
