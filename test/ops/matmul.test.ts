import { afterAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/runtime.js';
import type { TunableCall } from '../../src/gpu/tuning.js';
import { linear, MATMUL_TILES, MATMUL_VARIANTS, type MatmulTile, type MatmulTileConfig, type MatmulVariant, matmul, pickVariant } from '../../src/ops/matmul.js';
import { uploadAs } from '../../src/ops/cast.js';
import { quantize } from '../../src/ops/quantize.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { dtypes, randint, randn, reductionGpus, relL2, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, poisonNextOutput } from '../helpers/ops.js';
import { linearFusedRef, type MatmulDims, matmulRef } from '../reference/matmul.js';
import { dequantizeRef } from '../reference/quantize.js';

// Tolerances (relative L2 against float64): f32 accumulates in f32 over k ≤ ~300 terms, so
// errors stay near √k·2⁻²⁴ ≈ 1e-6 (bound 1e-5); f16 rounds the stored output (2⁻¹¹ relative,
// ≈ 3e-4 rms; bound 1e-3), inputs are pre-rounded to f16 for the reference.
const TOL: Record<DType, number> = { f32: 1e-5, f16: 1e-3 };

type Case = MatmulDims;

function input(random: () => number, n: number, dtype: DType): Float32Array {
  const values = randn(random, n);
  return dtype === 'f16' ? roundToF16(values) : values;
}

async function checkLinear(
  dtype: DType,
  lead: number[],
  k: number,
  n: number,
  opts: { bias: boolean; residual: boolean; variant?: MatmulVariant; bindingLimit?: number; gpu?: Gpu },
  seed: number,
): Promise<number> {
  const gpu = opts.gpu ?? (opts.bindingLimit ? await gpuWithBindingLimit(opts.bindingLimit) : await testGpu());
  const random = rng(seed);
  const m = lead.reduce((p, d) => p * d, 1);
  const x = input(random, m * k, dtype);
  const w = input(random, n * k, dtype);
  const bias = opts.bias ? input(random, n, dtype) : undefined;
  const residual = opts.residual ? input(random, m * n, dtype) : undefined;
  const tx = uploadAs(gpu, x, 'f32', [...lead, k], dtype);
  const tw = uploadAs(gpu, w, 'f32', [n, k], dtype);
  const tb = bias ? uploadAs(gpu, bias, 'f32', [n], dtype) : null;
  const tr = residual ? uploadAs(gpu, residual, 'f32', [...lead, n], dtype) : null;
  const poisoned = poisonNextOutput(gpu, [...lead, n], dtype);
  const out = linear(tx, tw, tb, { residual: tr, variant: opts.variant });
  expect(out.buffer).toBe(poisoned);
  expect(out.shape).toEqual([...lead, n]);
  const got = await out.read();
  const want = matmulRef(x, w, { batch: 1, m, n, k }, { transposeB: true, bBatched: false, bias, residual });
  for (const t of [tx, tw, tb, tr, out]) t?.release();
  return relL2(got, want);
}

async function checkMatmul(
  dtype: DType,
  c: Case,
  transposeB: boolean,
  opts: { variant?: MatmulVariant; bindingLimit?: number },
  seed: number,
): Promise<number> {
  const gpu = opts.bindingLimit ? await gpuWithBindingLimit(opts.bindingLimit) : await testGpu();
  const random = rng(seed);
  const a = input(random, c.batch * c.m * c.k, dtype);
  const b = input(random, c.batch * c.k * c.n, dtype);
  const ta = uploadAs(gpu, a, 'f32', [c.batch, c.m, c.k], dtype);
  const tb = uploadAs(gpu, b, 'f32', transposeB ? [c.batch, c.n, c.k] : [c.batch, c.k, c.n], dtype);
  const poisoned = poisonNextOutput(gpu, [c.batch, c.m, c.n], dtype);
  const out = matmul(ta, tb, { transposeB, variant: opts.variant });
  expect(out.buffer).toBe(poisoned);
  expect(out.shape).toEqual([c.batch, c.m, c.n]);
  const got = await out.read();
  const want = matmulRef(a, b, c, { transposeB, bBatched: true });
  for (const t of [ta, tb, out]) t.release();
  return relL2(got, want);
}

// (B, C, HW) ↔ (B, HW, C) (transposeLast2: (Z, cols, rows) → (Z, rows, cols)): the image layouts
// against a transposing reference.
const transposeLast2 = (v: Float32Array | Float64Array, rows: number, cols: number): Float64Array =>
  Float64Array.from({ length: v.length }, (_, i) => {
    const [z, r, c] = [Math.floor(i / (rows * cols)), Math.floor(i / cols) % rows, i % cols];
    return v[(z * cols + c) * rows + r]!;
  });

/** Relative L2 errors of an image (B, K, H, W) read as tokens (imageIn, with the row norm when
 *  `normEps`: its stats over strided reads) → (B, HW, N), and of those tokens written back as an
 *  image (imageOut) through a (K, N) weight plus a residual in the image layout. */
async function checkImage(
  dtype: DType,
  [batch, k, n, h, w]: readonly [number, number, number, number, number],
  opts: { normEps?: number; variant: MatmulVariant },
  seed: number,
): Promise<[number, number]> {
  const gpu = await testGpu();
  const random = rng(seed);
  const hw = h * w;
  const image = input(random, batch * k * hw, dtype);
  const weight = input(random, n * k, dtype);
  const bias = input(random, n, dtype);
  const tokens = Float32Array.from(transposeLast2(image, hw, k)); // (B, HW, K)
  const tx = uploadAs(gpu, image, 'f32', [batch, k, h, w], dtype);
  const tw = uploadAs(gpu, weight, 'f32', [n, k], dtype);
  const tb = uploadAs(gpu, bias, 'f32', [n], dtype);
  const poisoned = poisonNextOutput(gpu, [batch, hw, n], dtype);
  const out = linear(tx, tw, tb, { imageIn: true, normEps: opts.normEps, variant: opts.variant });
  expect(out.buffer).toBe(poisoned);
  expect(out.shape).toEqual([batch, hw, n]);
  const want = linearFusedRef(tokens, weight, batch * hw, n, k, { bias, normEps: opts.normEps });
  const got = await out.read();
  const inErr = relL2(got, want);

  // Back: out (B, HW, N) → (B, K, H, W) via a (K, N) weight, plus the image residual.
  const back = input(random, k * n, dtype);
  const residual = input(random, batch * k * hw, dtype);
  const tback = uploadAs(gpu, back, 'f32', [k, n], dtype);
  const tres = uploadAs(gpu, residual, 'f32', [batch, k, h, w], dtype);
  const poisonedImage = poisonNextOutput(gpu, [batch, k, h, w], dtype);
  const img = linear(out, tback, null, { imageOut: [h, w], residual: tres, variant: opts.variant });
  expect(img.buffer).toBe(poisonedImage);
  expect(img.shape).toEqual([batch, k, h, w]);
  const gotTokens = dtype === 'f16' ? roundToF16(got) : got;
  const wantTokens = linearFusedRef(gotTokens, back, batch * hw, k, n, { residual: Float32Array.from(transposeLast2(residual, hw, k)) });
  const outErr = relL2(await img.read(), transposeLast2(wantTokens, k, hw));
  for (const t of [tx, tw, tb, out, tback, tres, img]) t.release();
  return [inErr, outErr];
}

/** Relative L2 error of x · Q8(w)ᵀ + bias + residual against float64 with the dequantized weight. */
async function checkQ8(dtype: DType, m: number, k: number, n: number, variant: MatmulVariant, seed: number): Promise<number> {
  const gpu = await testGpu();
  const random = rng(seed);
  const x = input(random, m * k, dtype);
  const w = input(random, n * k, dtype);
  const bias = input(random, n, dtype);
  const residual = input(random, m * n, dtype);
  const tw = uploadAs(gpu, w, 'f32', [n, k], dtype);
  const q = quantize(tw);
  const { values, scales } = await q.read();
  const tx = uploadAs(gpu, x, 'f32', [m, k], dtype);
  const tb = uploadAs(gpu, bias, 'f32', [n], dtype);
  const tr = uploadAs(gpu, residual, 'f32', [m, n], dtype);
  const poisoned = poisonNextOutput(gpu, [m, n], dtype);
  const out = linear(tx, q, tb, { residual: tr, variant });
  expect(out.buffer).toBe(poisoned);
  const want = matmulRef(x, dequantizeRef(values, scales, n, k), { batch: 1, m, n, k }, { transposeB: true, bBatched: false, bias, residual });
  const err = relL2(await out.read(), want);
  for (const t of [tw, q, tx, tb, tr, out]) t.release();
  return err;
}

const errors: string[] = [];
const record = (label: string, err: number): number => {
  errors.push(`${label}: ${err.toExponential(2)}`);
  return err;
};
afterAll(() => console.log(`matmul relative L2 errors:\n  ${errors.join('\n  ')}`));

// First use of the GPU at the top level, so the file's afterAll (not a suite's) disposes it.
const types = await dtypes();

// The tiles differ only in constants (tile sizes, rows per invocation), checked in f32; f16
// changes loads and stores, checked on one tile and gemv. lavapipe spends seconds compiling each
// tiled specialization, so every extra one costs test time.
const LEAN_VARIANTS: readonly MatmulVariant[] = ['small', 'gemv'];
/** The variants f32 runs: all but the f16-staging tiles. */
const F32_VARIANTS = MATMUL_VARIANTS.filter((v) => v === 'gemv' || !(MATMUL_TILES[v] as MatmulTileConfig).f16);

describe('linear', () => {
  // Edge shapes: 1s, 77 (text tokens), odd primes, k % 4 ≠ 0 (scalar loads) and = 0 (vec4).
  const shapes: Array<[number[], number, number]> = [
    [[1], 1, 1],
    [[1], 36, 5],
    [[77], 13, 29],
    [[2, 3], 7, 1],
    [[1, 97], 131, 67],
    [[1, 77], 64, 40],
  ];
  for (const dtype of types) {
    const variants = dtype === 'f32' ? F32_VARIANTS : LEAN_VARIANTS;
    it(`${dtype}: edge shapes, variants ${variants.join(' / ')}, bias / no bias / residual`, async () => {
      let seed = 1;
      for (const [lead, k, n] of shapes) {
        for (const variant of variants) {
          const opts = { bias: seed % 3 !== 0, residual: seed % 2 === 0, variant };
          const err = record(`linear ${dtype} ${lead}×${k}→${n} ${JSON.stringify(opts)}`, await checkLinear(dtype, lead, k, n, opts, seed++));
          expect(err, `${lead}×${k}→${n} ${JSON.stringify(opts)}`).toBeLessThan(TOL[dtype]); // see TOL
        }
      }
    });

    it(`${dtype}: random shapes with the default variant`, async () => {
      const random = rng(dtype === 'f32' ? 11 : 12);
      for (let i = 0; i < 6; i++) {
        const lead = [randint(random, 1, 3), randint(random, 1, 70)];
        const k = randint(random, 1, 300);
        const n = randint(random, 1, 150);
        const opts = { bias: i % 2 === 0, residual: i % 3 === 0 };
        const err = record(`linear ${dtype} ${lead}×${k}→${n} default ${JSON.stringify(opts)}`, await checkLinear(dtype, lead, k, n, opts, 100 + i));
        expect(err, `${lead}×${k}→${n}`).toBeLessThan(TOL[dtype]); // see TOL
      }
    });

    it(`${dtype}: split over row windows when x and the output exceed the binding limit`, async () => {
      // A 2 KiB limit forces windows of a few rows; odd k puts window starts mid-word / off 256 B.
      for (const [k, n, variant] of [
        [13, 21, undefined],
        [16, 24, undefined],
        [13, 21, 'gemv'],
        [16, 24, 'direct4x8'],
      ] as const) {
        const opts = { bias: true, residual: true, bindingLimit: 2048, variant };
        const err = record(`linear ${dtype} 150×${k}→${n} windows ${variant ?? ''}`, await checkLinear(dtype, [150], k, n, opts, 7 + k));
        expect(err, `k ${k} ${variant}`).toBeLessThan(TOL[dtype]); // see TOL
      }
      // The limit really reaches the op: below one row's bytes it refuses.
      const gpu = await gpuWithBindingLimit(512);
      const x = Tensor.empty(gpu, [4, 300], dtype);
      const w = Tensor.empty(gpu, [2, 300], dtype);
      expect(() => linear(x, w)).toThrow(/binding limit/);
      x.release();
      w.release();
    });
  }

  it('rejects mismatched shapes and dtypes with the shapes in the message', async () => {
    const gpu = await testGpu();
    const x = Tensor.empty(gpu, [2, 5, 7], 'f32');
    const w = Tensor.empty(gpu, [3, 8], 'f32');
    expect(() => linear(x, w)).toThrow(/linear: .*x \(2, 5, 7\), weight \(3, 8\)/);
    const w7 = Tensor.empty(gpu, [3, 7], 'f32');
    const b = Tensor.empty(gpu, [4], 'f32');
    expect(() => linear(x, w7, b)).toThrow(/linear: bias must be \(3\)/);
    const r = Tensor.empty(gpu, [2, 5, 4], 'f32');
    expect(() => linear(x, w7, null, { residual: r })).toThrow(/residual must be \(2, 5, 3\)/);
    const w16 = Tensor.empty(gpu, [3, 7], 'f16');
    expect(() => linear(x, w16)).toThrow(/linear: mixed dtypes/);
    for (const t of [x, w, w7, b, r, w16]) t.release();
  });
});

async function checkFused(
  dtype: DType,
  [m, k, n]: readonly [number, number, number],
  opts: { normEps?: number; geglu?: boolean; bias: boolean; residual: boolean; variant?: MatmulVariant; bindingLimit?: number; gpu?: Gpu },
  seed: number,
): Promise<number> {
  const gpu = opts.gpu ?? (opts.bindingLimit ? await gpuWithBindingLimit(opts.bindingLimit) : await testGpu());
  const random = rng(seed);
  const wide = opts.geglu ? 2 * n : n;
  // Rows off zero by 3 (a mean well above their spread) exercise the norm's corrected two-pass.
  const x = input(random, m * k, dtype).map((v) => v + (opts.normEps ? 3 : 0));
  const xs = dtype === 'f16' ? roundToF16(x) : x;
  const w = input(random, wide * k, dtype);
  const bias = opts.bias ? input(random, wide, dtype) : undefined;
  const residual = opts.residual ? input(random, m * n, dtype) : undefined;
  const tx = uploadAs(gpu, xs, 'f32', [m, k], dtype);
  const tw = uploadAs(gpu, w, 'f32', [wide, k], dtype);
  const tb = bias ? uploadAs(gpu, bias, 'f32', [wide], dtype) : null;
  const tr = residual ? uploadAs(gpu, residual, 'f32', [m, n], dtype) : null;
  const poisoned = poisonNextOutput(gpu, [m, n], dtype);
  const out = linear(tx, tw, tb, { residual: tr, variant: opts.variant, normEps: opts.normEps, geglu: opts.geglu });
  expect(out.buffer).toBe(poisoned);
  expect(out.shape).toEqual([m, n]);
  const got = await out.read();
  const want = linearFusedRef(xs, w, m, n, k, { bias, residual, normEps: opts.normEps, geglu: opts.geglu });
  for (const t of [tx, tw, tb, tr, out]) t?.release();
  return relL2(got, want);
}

describe('linear fusions: row norm (NORM_A) and GEGLU epilogue', () => {
  // m = 1 (gemv's shape: the fusions take a tile), k % 4 ≠ 0 (scalar loads), k = 1 (zero
  // variance), m and n off every tile size.
  const shapes: Array<readonly [number, number, number]> = [
    [1, 5, 3],
    [77, 13, 29],
    [150, 64, 40],
    [33, 131, 67],
    [3, 1, 6],
  ];
  const fusions = [
    { normEps: 1e-5, bias: false, residual: false },
    { geglu: true, bias: true, residual: false },
    { normEps: 1e-5, geglu: true, bias: true, residual: true },
  ];
  // lavapipe compiles each specialization for seconds: every fusion on the small tile (vec4 and
  // scalar loads), both at once on the other tiles, whose row norm splits rows differently.
  const runs = (dtype: DType): Array<{ shape: readonly [number, number, number]; fusion: (typeof fusions)[number]; variant?: MatmulVariant }> => [
    ...shapes.flatMap((shape) => (dtype === 'f32' ? fusions : fusions.slice(2)).map((fusion) => ({ shape, fusion, variant: 'small' as const }))),
    ...(dtype === 'f32' ? (['medium', 'large'] as const) : [undefined]).map((variant) => ({ shape: [150, 64, 40] as const, fusion: fusions[2]!, variant })),
  ];
  for (const dtype of types) {
    it(`${dtype}: awkward shapes, each tile`, async () => {
      let seed = dtype === 'f32' ? 600 : 700;
      for (const { shape, fusion, variant } of runs(dtype)) {
        const opts = { ...fusion, variant };
        const err = record(`fused ${dtype} ${shape} ${JSON.stringify(opts)}`, await checkFused(dtype, shape, opts, seed++));
        expect(err, `${shape} ${JSON.stringify(opts)}`).toBeLessThan(TOL[dtype]); // see TOL: the norm is f32 math on k ≤ 131 terms
      }
    }, 300_000);

    it(`${dtype}: split over row windows at the binding limit`, async () => {
      const opts = { normEps: 1e-6, geglu: true, bias: true, residual: true, bindingLimit: 2048, variant: 'small' as const };
      const err = record(`fused ${dtype} windows`, await checkFused(dtype, [150, 13, 9], opts, 800));
      expect(err).toBeLessThan(TOL[dtype]); // see TOL
    });
  }

  // The image layouts with the row norm (checkImage).
  for (const dtype of types) {
    it(`${dtype}: an image read as tokens (imageIn) and tokens written as an image (imageOut)`, async () => {
      for (const shape of [[2, 13, 21, 5, 7], [1, 64, 40, 9, 11]] as const) {
        const [inErr, outErr] = await checkImage(dtype, shape, { normEps: 1e-5, variant: 'small' }, dtype === 'f32' ? 900 : 901);
        expect(record(`imageIn ${dtype} ${shape}`, inErr)).toBeLessThan(TOL[dtype]); // see TOL
        expect(record(`imageOut ${dtype} ${shape}`, outErr)).toBeLessThan(TOL[dtype]); // see TOL
      }
    }, 300_000);
  }

  it('refuses gemv, an odd GEGLU weight and a bad eps', async () => {
    const gpu = await testGpu();
    const x = Tensor.empty(gpu, [2, 8], 'f32');
    const w = Tensor.empty(gpu, [6, 8], 'f32');
    const w5 = Tensor.empty(gpu, [5, 8], 'f32');
    expect(() => linear(x, w, null, { geglu: true, variant: 'gemv' })).toThrow(/gemv variant has no GEGLU/);
    expect(() => linear(x, w, null, { normEps: 1e-5, variant: 'gemv' })).toThrow(/gemv variant has no row norm/);
    expect(() => linear(x, w5, null, { geglu: true })).toThrow(/GEGLU needs an even number of weight rows/);
    expect(() => linear(x, w, null, { normEps: 0 })).toThrow(/normEps 0 must be a positive number/);
    expect(() => linear(x, w, null, { imageIn: true })).toThrow(/expected x \(B, K, H, W\)/);
    expect(() => linear(x, w, null, { imageOut: [2, 2] })).toThrow(/an image output needs x \(B, H·W, K\)/);
    for (const t of [x, w, w5]) t.release();
  });
});

describe('matmul', () => {
  const cases: Case[] = [
    { batch: 1, m: 1, n: 1, k: 1 },
    { batch: 3, m: 77, n: 13, k: 29 },
    { batch: 2, m: 37, n: 64, k: 40 },
    { batch: 5, m: 1, n: 67, k: 131 },
  ];
  for (const dtype of types) {
    for (const transposeB of [false, true]) {
      it(`${dtype}: batched, transposeB ${transposeB}`, async () => {
        let seed = transposeB ? 200 : 300;
        for (const c of cases) {
          const err = record(`matmul ${dtype} ${JSON.stringify(c)} tB=${transposeB}`, await checkMatmul(dtype, c, transposeB, {}, seed++));
          expect(err, JSON.stringify(c)).toBeLessThan(TOL[dtype]); // see TOL
        }
      });
    }

    it(`${dtype}: gemv variant over batches and several row groups`, async () => {
      const err = await checkMatmul(dtype, { batch: 3, m: 9, n: 21, k: 130 }, true, { variant: 'gemv' }, 500);
      expect(record(`matmul ${dtype} gemv 3×9×130→21`, err)).toBeLessThan(TOL[dtype]); // see TOL
    });

    it(`${dtype}: windows over whole batches, and over rows when one batch does not fit`, async () => {
      // 4 KiB: one (9 × 20) batch fits, several do not; a (150 × 12) one must split by rows.
      const byBatch = await checkMatmul(dtype, { batch: 6, m: 9, n: 20, k: 17 }, false, { bindingLimit: 4096 }, 400);
      expect(record(`matmul ${dtype} batch windows`, byBatch)).toBeLessThan(TOL[dtype]); // see TOL
      const byRow = await checkMatmul(dtype, { batch: 2, m: 150, n: 12, k: 8 }, true, { bindingLimit: 4096, variant: 'small' }, 401);
      expect(record(`matmul ${dtype} row windows`, byRow)).toBeLessThan(TOL[dtype]); // see TOL
    });
  }

  it('rejects mismatched shapes', async () => {
    const gpu = await testGpu();
    const a = Tensor.empty(gpu, [2, 3, 4], 'f32');
    const b = Tensor.empty(gpu, [2, 5, 6], 'f32');
    expect(() => matmul(a, b)).toThrow(/matmul: expected b \(2, 4, N\), got a \(2, 3, 4\), b \(2, 5, 6\)/);
    expect(() => matmul(a, b, { transposeB: true })).toThrow(/matmul: expected b \(2, N, 4\)/);
    const bt = Tensor.empty(gpu, [2, 4, 6], 'f32');
    expect(() => matmul(a, bt, { variant: 'gemv' })).toThrow(/gemv variant needs b as \(N, K\)/);
    bt.release();
    a.release();
    b.release();
  });

});

describe('every variant', () => {
  // m and n past two of the largest tiles (128), k past one TILE_K of 32 with a remainder: k 37
  // (scalar loads), 44 (vec4) and 70 (a partial Q8 block). Each fusion a variant supports runs;
  // the ones it does not must be refused, naming it. gemv has no row norm, GEGLU, image layout
  // or plain (k, n) B; the f16-staging tiles take f16 only, without row norm or Q8 (which round);
  // deep8 needs 27 KiB of workgroup memory (lavapipe allows 32), refused on smaller devices. The
  // direct tiles take every fusion (their row norm: each invocation's own rows).
  for (const dtype of types) {
    for (const variant of MATMUL_VARIANTS) {
      it(`${dtype}: ${variant}`, async () => {
        const gpu = await testGpu();
        const tile = variant === 'gemv' ? null : (MATMUL_TILES[variant] as MatmulTileConfig);
        const refused = (run: () => Promise<unknown>, pattern: RegExp): Promise<void> => expect(run()).rejects.toThrow(pattern);
        const noTile = new RegExp(`the ${variant} variant (needs b|has no)`);
        if (tile?.f16 && dtype === 'f32') {
          await refused(() => checkLinear(dtype, [133], 37, 141, { bias: true, residual: true, variant }, 1), new RegExp(`the ${variant} variant stages f16 tiles`));
          return;
        }
        if (variant === 'deep8' && gpu.limits.maxComputeWorkgroupStorageSize < 32768) {
          await refused(() => checkLinear(dtype, [133], 37, 141, { bias: true, residual: true, variant }, 1), /bytes of workgroup memory/);
          return;
        }
        const label = `${variant} ${dtype}`;
        // see TOL for every bound below
        expect(record(`${label} linear`, await checkLinear(dtype, [133], 37, 141, { bias: true, residual: true, variant }, 1000))).toBeLessThan(TOL[dtype]);
        const plainB = { batch: 2, m: 131, n: 137, k: 44 };
        if (tile) expect(record(`${label} matmul`, await checkMatmul(dtype, plainB, false, { variant }, 1001))).toBeLessThan(TOL[dtype]);
        else await refused(() => checkMatmul(dtype, plainB, false, { variant }, 1001), noTile);
        const rounds = tile?.f16 === true; // a row norm or Q8 would round the staged values
        const fused = { normEps: rounds ? undefined : 1e-5, geglu: true, bias: true, residual: true, variant };
        if (tile) expect(record(`${label} norm+GEGLU`, await checkFused(dtype, [130, 44, 67], fused, 1002))).toBeLessThan(TOL[dtype]);
        else await refused(() => checkFused(dtype, [130, 44, 67], fused, 1002), noTile);
        if (rounds) await refused(() => checkFused(dtype, [130, 44, 67], { ...fused, normEps: 1e-5 }, 1002), new RegExp(`the ${variant} variant stages f16 tiles`));
        const image = [2, 37, 30, 9, 15] as const; // 135 pixels per image: rows straddle images
        if (tile) {
          const [inErr, outErr] = await checkImage(dtype, image, { normEps: rounds ? undefined : 1e-5, variant }, 1003);
          expect(record(`${label} imageIn`, inErr)).toBeLessThan(TOL[dtype]);
          expect(record(`${label} imageOut`, outErr)).toBeLessThan(TOL[dtype]);
        } else await refused(() => checkImage(dtype, image, { variant }, 1003), noTile);
        if (rounds) await refused(() => checkQ8(dtype, 133, 70, 141, variant, 1004), new RegExp(`the ${variant} variant stages f16 tiles`));
        else expect(record(`${label} q8`, await checkQ8(dtype, 133, 70, 141, variant, 1004))).toBeLessThan(TOL[dtype]);
      }, 300_000);
    }
  }
});

describe('direct tiles with and without subgroups', () => {
  // With subgroups (the test GPU on lavapipe) each of 4 lanes loads one column of a quad and
  // shares it; without, every invocation loads all four (include matmul-lane). "every variant"
  // runs the first; this runs both, on the shapes there: n 141 and 67 leave partial column quads
  // (columns past n are loaded as zero by their lane and never stored).
  const direct = (Object.keys(MATMUL_TILES) as MatmulTile[]).filter((t) => (MATMUL_TILES[t] as MatmulTileConfig).direct);
  for (const dtype of types) {
    it(`${dtype}: ${direct.join(', ')}`, async () => {
      for (const { gpu } of await reductionGpus()) {
        const how = gpu.subgroups ? 'shared' : 'per invocation';
        for (const variant of direct) {
          const label = `${variant} ${dtype} ${how}`;
          // see TOL for both bounds
          expect(record(`${label} linear`, await checkLinear(dtype, [133], 37, 141, { bias: true, residual: true, variant, gpu }, 1000))).toBeLessThan(TOL[dtype]);
          const fused = { normEps: 1e-5, geglu: true, bias: true, residual: true, variant, gpu };
          expect(record(`${label} norm+GEGLU`, await checkFused(dtype, [130, 44, 67], fused, 1002))).toBeLessThan(TOL[dtype]);
        }
      }
    }, 300_000);
  }
});

describe('tuning', () => {
  it('offers the valid variants, runs each prepared, and takes a stored choice', async () => {
    const gpu = await testGpu();
    const x = Tensor.empty(gpu, [20, 36], 'f32');
    const w = Tensor.empty(gpu, [24, 36], 'f32');
    const calls: TunableCall[] = [];
    gpu.tuning.observe((c) => calls.push(c));
    linear(x, w).release();
    linear(x, w, null, { normEps: 1e-5 }).release();
    const q = quantize(w);
    linear(x, q).release();
    gpu.tuning.observe(null);
    q.release();
    const [plain, normed, q8] = calls as [TunableCall, TunableCall, TunableCall];
    expect(q8.key).toMatch(/q8/);
    expect(plain.candidates).toEqual(F32_VARIANTS); // 20 rows ≤ 64: gemv too
    expect(normed.candidates).not.toContain('gemv'); // gemv has no row norm
    expect(plain.key).not.toBe(normed.key);
    for (const call of calls) {
      expect(call.candidates).toContain(call.heuristic);
      const prepared = call.prepare(gpu);
      for (const v of call.candidates) prepared.run(v);
      prepared.dispose();
    }

    // A stored choice replaces the heuristic: the dispatched kernel shows which ran.
    const kernels: string[] = [];
    const dispatch = gpu.dispatch.bind(gpu);
    gpu.dispatch = (d) => {
      kernels.push(`${d.kernel.name} ${d.defines.TILE_M ?? ''}`);
      dispatch(d);
    };
    try {
      gpu.tuning.use(new Map([[`${plain.op.id}|${plain.key}`, 'medium']]));
      linear(x, w).release();
      gpu.tuning.use(new Map());
      linear(x, w).release();
    } finally {
      delete (gpu as { dispatch?: unknown }).dispatch;
      gpu.tuning.use(new Map());
    }
    expect(kernels).toEqual(['matmul 64', `matmul ${MATMUL_TILES[plain.heuristic as MatmulTile].m}`]);
    x.release();
    w.release();
  });
});

describe('pickVariant', () => {
  it('takes gemv for a few rows, else the largest tile that still yields enough workgroups', () => {
    expect(pickVariant(1, 1024, 5120, true)).toBe('large');
    expect(pickVariant(1, 4096, 320, true)).toBe('medium');
    expect(pickVariant(1, 77, 1280, true)).toBe('small');
    expect(pickVariant(1, 1, 1280, true)).toBe('gemv');
    expect(pickVariant(1, 1, 1280, false)).toBe('small');
  });
});
