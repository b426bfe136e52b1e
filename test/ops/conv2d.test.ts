import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conv2d, CONV2D_TILES, CONV2D_VARIANTS, type Conv2dVariant } from '../../src/ops/conv2d.js';
import { uploadAs } from '../../src/ops/cast.js';
import { Q8Tensor, quantize } from '../../src/ops/quantize.js';
import { RecordingGpu } from '../../src/gpu/recording.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { type TunableCall, Tuning } from '../../src/gpu/tuning.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { conv2dOutShape, conv2dRef, type Pad } from '../reference/conv2d.js';
import { dequantizeRef } from '../reference/quantize.js';
import { dtypes, randint, randn, reductionGpus, relL2, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, poisonNextOutput } from '../helpers/ops.js';

interface Case {
  readonly name: string;
  readonly x: [number, number, number, number]; // B, C, H, W
  readonly o: number;
  readonly k: [number, number];
  readonly stride: number;
  readonly pad: number | Pad;
  /** 'image': a bias per image (B, O), as a resnet's conv1 bias plus its time embedding. */
  readonly bias: boolean | 'image';
  readonly residual: boolean;
  /** The weight quantized to Q8 on the GPU; the reference gets its dequantized values. */
  readonly q8?: boolean;
}

/** Runs one case on the GPU (inside `limitBytes` if given) and returns relL2 against the reference. */
async function runCase(c: Case, dtype: DType, seed: number, limitBytes?: number, variant?: Conv2dVariant, on?: Gpu): Promise<number> {
  const gpu = on ?? (limitBytes === undefined ? await testGpu() : await gpuWithBindingLimit(limitBytes));
  const random = rng(seed);
  const [B, C, H, W] = c.x;
  const [kh, kw] = c.k;
  const pad: Pad = typeof c.pad === 'number' ? [c.pad, c.pad, c.pad, c.pad] : c.pad;
  const shape = { x: c.x, o: c.o, kh, kw, stride: c.stride, pad };
  const outShape = conv2dOutShape(shape);
  const [, , outH, outW] = outShape;
  const round = (v: Float32Array): Float32Array => (dtype === 'f16' ? roundToF16(v) : v);
  const xs = round(randn(random, B * C * H * W));
  const ws = round(randn(random, c.o * C * kh * kw, 1 / Math.sqrt(C * kh * kw)));
  const bs = c.bias ? round(randn(random, (c.bias === 'image' ? B : 1) * c.o, 0.5)) : null;
  const rs = c.residual ? round(randn(random, B * c.o * outH * outW)) : null;

  const x = uploadAs(gpu, xs, 'f32', c.x, dtype);
  const wf = uploadAs(gpu, ws, 'f32', [c.o, C, kh, kw], dtype);
  const q = c.q8 ? quantize(wf) : null;
  if (q) wf.release();
  const w = q ?? wf;
  const wRef = q ? await q.read().then(({ values, scales }) => dequantizeRef(values, scales, c.o, C * kh * kw)) : ws;
  const b = bs && uploadAs(gpu, bs, 'f32', c.bias === 'image' ? [B, c.o] : [c.o], dtype);
  const r = rs && uploadAs(gpu, rs, 'f32', outShape, dtype);
  const poisoned = poisonNextOutput(gpu, outShape, dtype);
  const out = conv2d(x, w, b, { stride: c.stride, padding: c.pad, ...(r ? { residual: r } : {}), ...(variant ? { variant } : {}) });
  expect(out.buffer).toBe(poisoned);
  expect(out.shape).toEqual(outShape);
  const got = await out.read();
  for (const t of [x, w, b, r, out]) t?.release();
  return relL2(got, conv2dRef(xs, wRef, bs, rs, shape));
}


// f32: K ≤ 600 products accumulated in f32 give ~1e-7·√K relative error, so 1e-5 has margin.
// f16: inputs are rounded before the reference sees them; the output's f16 storage rounding
// (2^-11 relative, ≈3e-4 rms) dominates, so 1e-3.
const TOLERANCE: Record<DType, number> = { f32: 1e-5, f16: 1e-3 };

const types = await dtypes();

const cases: Case[] = [
  { name: '3×3 pad 1, odd sizes, two images', x: [2, 5, 9, 11], o: 7, k: [3, 3], stride: 1, pad: 1, bias: true, residual: false },
  { name: '3×3 pad 1, N and M over one tile, C not a multiple of 16', x: [1, 13, 17, 19], o: 70, k: [3, 3], stride: 1, pad: 1, bias: true, residual: false },
  { name: '3×3 stride 2 pad 1 on odd sizes (downsample)', x: [2, 9, 13, 10], o: 11, k: [3, 3], stride: 2, pad: 1, bias: true, residual: false },
  { name: '3×3 stride 2, padding [0, 1, 0, 1], no bias (VAE encoder downsample)', x: [2, 6, 11, 8], o: 5, k: [3, 3], stride: 2, pad: [0, 1, 0, 1], bias: false, residual: false },
  { name: '1×1 with bias and residual (resnet shortcut)', x: [2, 67, 10, 13], o: 13, k: [1, 1], stride: 1, pad: 0, bias: true, residual: true },
  { name: '3×3 with residual, no bias', x: [1, 20, 12, 7], o: 9, k: [3, 3], stride: 1, pad: 1, bias: false, residual: true },
  { name: 'rectangular 2×5 kernel, asymmetric padding [2, 0, 1, 3], stride 2', x: [1, 4, 9, 12], o: 3, k: [2, 5], stride: 2, pad: [2, 0, 1, 3], bias: true, residual: false },
  { name: '3×3 without padding (valid), 1-pixel output rows', x: [1, 3, 3, 8], o: 66, k: [3, 3], stride: 1, pad: 0, bias: true, residual: false },
  { name: '3×3 pad 1, a bias per image (resnet conv1 with its time embedding), N over one tile', x: [3, 7, 9, 11], o: 70, k: [3, 3], stride: 1, pad: 1, bias: 'image', residual: false },
];

describe('conv2d', () => {
  for (const c of cases) {
    it(c.name, async () => {
      for (const dtype of await dtypes()) {
        const err = await runCase(c, dtype, c.name.length * 7919);
        expect(err, `${dtype} relL2`).toBeLessThan(TOLERANCE[dtype]);
      }
    });
  }

  it('random shapes', async () => {
    const random = rng(2024);
    for (let i = 0; i < 4; i++) {
      const k = randint(random, 1, 3) * 2 - 1;
      const c: Case = {
        name: 'random',
        x: [randint(random, 1, 2), randint(random, 1, 40), randint(random, k, 21), randint(random, k, 21)],
        o: randint(random, 1, 80),
        k: [k, k],
        stride: randint(random, 1, 2),
        pad: randint(random, 0, (k - 1) / 2),
        bias: random() < 0.5,
        residual: random() < 0.5,
      };
      for (const dtype of await dtypes()) {
        const err = await runCase(c, dtype, 100 + i);
        expect(err, `${JSON.stringify(c)} ${dtype} relL2`).toBeLessThan(TOLERANCE[dtype]);
      }
    }
  });
});

// 156 pixels and 130 channels: over one tile of every variant in M and N, partial tiles on both
// (and a partial quad of a direct tile's channels).
const TWO_IMAGES: Case = { name: 'two images, asymmetric padding, a bias per image, residual', x: [2, 5, 13, 12], o: 130, k: [3, 3], stride: 1, pad: [2, 0, 1, 1], bias: 'image', residual: true };
const Q8_CASE: Case = { ...TWO_IMAGES, name: 'Q8 weight', q8: true };

describe('conv2d tiles (every variant, both dtypes, outputs poisoned)', () => {
  const variantCases: Case[] = [
    TWO_IMAGES,
    { name: 'stride 2, C = 19 (not a multiple of TK)', x: [1, 19, 17, 15], o: 9, k: [3, 3], stride: 2, pad: 1, bias: true, residual: false },
    { name: '1×1, C = 33, residual', x: [1, 33, 11, 7], o: 20, k: [1, 1], stride: 1, pad: 0, bias: false, residual: true },
  ];
  // 24 channel planes of 64 elements under a 1024-element binding: input-channel chunks that
  // ACCUMULATE (the weight, 864 elements, fits whole).
  const chunked: Case = { name: 'input-channel chunks', x: [1, 24, 8, 8], o: 4, k: [3, 3], stride: 1, pad: 1, bias: true, residual: true };

  // Inputs for the calls a variant refuses (nothing runs).
  let x32: Tensor, w32: Tensor, x16: Tensor, q: Q8Tensor;
  beforeAll(async () => {
    const gpu = await testGpu();
    [x32, w32] = [Tensor.empty(gpu, [1, 3, 8, 8], 'f32'), Tensor.empty(gpu, [4, 3, 3, 3], 'f32')];
    [x16, q] = [Tensor.empty(gpu, [1, 3, 8, 8], gpu.f16 ? 'f16' : 'f32'), Q8Tensor.empty(gpu, [4, 3, 3, 3], 'q8')];
  });
  afterAll(() => {
    for (const t of [x32, w32, x16, q]) t.release();
  });

  // Per variant and dtype: five specializations to compile, which takes llvmpipe up to half a
  // minute each for the 8×8 tiles on a loaded machine; hence the 300 s limit.
  for (const variant of CONV2D_VARIANTS) {
    for (const dtype of types) {
      it(`${variant} ${dtype}`, async () => {
        const f16Tiles = CONV2D_TILES[variant].f16Tiles;
        if (f16Tiles && dtype === 'f32') {
          // Staging f32 values as f16 would round them: the launcher refuses.
          expect(() => conv2d(x32, w32, null, { variant })).toThrow(`conv2d: tile ${variant} does not apply`);
          return;
        }
        for (const [i, c] of variantCases.entries()) {
          const err = await runCase(c, dtype, 300 + i, undefined, variant);
          expect(err, `${c.name} relL2`).toBeLessThan(TOLERANCE[dtype]); // see TOLERANCE
        }
        const err = await runCase(chunked, dtype, 310, 1024 * (dtype === 'f32' ? 4 : 2), variant);
        // f16: one storage rounding per chunk (2 chunks), as in the binding-limit tests below.
        expect(err, `${chunked.name} relL2`).toBeLessThan(TOLERANCE[dtype]);
        if (f16Tiles) {
          // A dequantized Q8 weight is not an f16 value: staging it as f16 would round it.
          expect(() => conv2d(x16, q, null, { variant })).toThrow(`conv2d: tile ${variant} does not apply`);
        } else {
          // The reference gets the dequantized weight: the float tolerance holds.
          expect(await runCase(Q8_CASE, dtype, 311, undefined, variant), 'Q8 relL2').toBeLessThan(TOLERANCE[dtype]);
        }
      }, 300_000);
    }
  }
});

describe('conv2d direct tiles with and without subgroups', () => {
  // With subgroups (the test GPU on lavapipe) each of 4 lanes loads one of every 4 weights and
  // shares it; without, every thread loads them all (include conv2d-lane). The tiles' test
  // above runs the first; this runs both: 130 output channels leave a partial channel quad.
  const direct = CONV2D_VARIANTS.filter((v) => CONV2D_TILES[v].direct);
  for (const dtype of types) {
    it(`${dtype}: ${direct.join(', ')}`, async () => {
      for (const { gpu } of await reductionGpus()) {
        const how = gpu.subgroups ? 'shared' : 'per invocation';
        for (const variant of direct) {
          expect(await runCase(TWO_IMAGES, dtype, 320, undefined, variant, gpu), `${variant} ${how} relL2`).toBeLessThan(TOLERANCE[dtype]); // see TOLERANCE
          expect(await runCase(Q8_CASE, dtype, 321, undefined, variant, gpu), `${variant} ${how} Q8 relL2`).toBeLessThan(TOLERANCE[dtype]);
        }
      }
    }, 300_000);
  }
});

describe('conv2d tuning', () => {
  it('offers the valid tiles under a shape key, takes a stored choice, and its tune call runs every candidate', async () => {
    const gpu = await testGpu();
    const x = Tensor.empty(gpu, [1, 5, 9, 11], 'f32');
    const w = Tensor.empty(gpu, [4, 5, 3, 3], 'f32');
    const calls: TunableCall[] = [];
    gpu.tuning.observe((c) => calls.push(c));
    conv2d(x, w, null, { stride: 2, padding: [0, 1, 0, 1] }).release();
    gpu.tuning.observe(null);
    // The heuristic by adapter kind: a staged tile on a GPU, DIRECT on a CPU adapter (lavapipe here).
    expect(gpu.tuning.cpu, gpu.adapterName).toBe(/llvmpipe|swiftshader/i.test(gpu.adapterName));
    expect(calls.map((c) => [c.key, c.heuristic, c.candidates])).toEqual([['f32 1×5×9×11→4 3×3 s2 p0,1,0,1 bias:none', gpu.tuning.cpu ? 'direct4x8' : '64x8', ['64x8', 'direct8x8', 'direct4x8']]]);
    const tile = (tuning: Tuning): unknown[] => {
      const recorded = new RecordingGpu(gpu.limits, gpu.f16, gpu.subgroups, tuning);
      conv2d(Tensor.empty(recorded, x.shape, 'f32'), Tensor.empty(recorded, w.shape, 'f32'), null, { stride: 2, padding: [0, 1, 0, 1] });
      return recorded.dispatches.map((d) => [d.defines.TN, d.defines.DIRECT]);
    };
    expect(tile(new Tuning(false)), 'a GPU: 64x8').toEqual([[8, false]]);
    expect(tile(new Tuning(true)), 'a CPU adapter: direct4x8').toEqual([[4, true]]);
    const call = calls[0]!;
    // A stored choice among the candidates is taken (the dispatch's defines show the tile).
    gpu.tuning.use(new Map([[`${call.op.id}|${call.key}`, 'direct8x8']]));
    expect(tile(gpu.tuning)).toEqual([[8, true]]);
    gpu.tuning.use(new Map());
    const prepared = call.prepare(gpu);
    for (const v of call.candidates) prepared.run(v);
    prepared.dispose();
    await gpu.sync();
    for (const t of [x, w]) t.release();
  });
});

describe('conv2d over the binding limit (limit shrunk to test size)', () => {
  // Limits are given in elements × element size, so both dtypes split alike (up to alignment).
  it('splits a batch whose images fit one by one (misaligned window starts)', async () => {
    for (const bias of [true, 'image'] as const) {
      const c: Case = { name: 'batch', x: [3, 4, 9, 9], o: 5, k: [3, 3], stride: 2, pad: [0, 1, 0, 1], bias, residual: true };
      for (const dtype of await dtypes()) {
        // an input image is 4·9·9 = 324 elements: two fit 700, three do not.
        const err = await runCase(c, dtype, 5, 700 * (dtype === 'f32' ? 4 : 2));
        expect(err, `${dtype} bias ${bias} relL2`).toBeLessThan(TOLERANCE[dtype]);
      }
    }
  });

  it('splits one image into output- and input-channel chunks (accumulated), with a bias per image and residual', async () => {
    for (const bias of [true, 'image'] as const) {
      const c: Case = { name: 'channels', x: [2, 9, 15, 15], o: 7, k: [3, 3], stride: 1, pad: 1, bias, residual: true };
      for (const dtype of await dtypes()) {
        // a plane is 225 elements: windows hold 3–4 planes, the weight (567 elements) still fits.
        const err = await runCase(c, dtype, 6, 1024 * (dtype === 'f32' ? 4 : 2));
        // f16 adds one storage rounding per input-channel chunk (3 chunks): still well under 1e-3.
        expect(err, `${dtype} bias ${bias} relL2`).toBeLessThan(TOLERANCE[dtype]);
      }
    }
  });

  it('reports a clear error when one channel plane exceeds the limit', async () => {
    const gpu = await gpuWithBindingLimit(4096);
    const x = uploadAs(gpu, randn(rng(7), 2 * 40 * 40), 'f32', [1, 2, 40, 40], 'f32');
    const w = uploadAs(gpu, randn(rng(8), 3 * 2 * 9), 'f32', [3, 2, 3, 3], 'f32');
    expect(() => conv2d(x, w, null, { padding: 1 })).toThrow(/conv2d: x \(1, 2, 40, 40\).*one channel plane exceeds maxStorageBufferBindingSize \(4096/);
    x.release();
    w.release();
  });

  it('rejects mismatched shapes and dtypes with the shapes in the message', async () => {
    const gpu = await testGpu();
    const x = Tensor.empty(gpu, [1, 3, 8, 8], 'f32');
    const w = Tensor.empty(gpu, [4, 5, 3, 3], 'f32');
    expect(() => conv2d(x, w)).toThrow('conv2d: weight expects 5 input channels, x has 3 (x (1, 3, 8, 8), weight (4, 5, 3, 3))');
    const w3 = Tensor.empty(gpu, [4, 3, 3, 3], 'f32');
    const r = Tensor.empty(gpu, [1, 4, 7, 8], 'f32');
    expect(() => conv2d(x, w3, null, { padding: 1, residual: r })).toThrow('conv2d: residual (1, 4, 7, 8) f32 must be (1, 4, 8, 8) f32');
    const b = Tensor.empty(gpu, [2, 4], 'f32');
    expect(() => conv2d(x, w3, b)).toThrow('conv2d: bias (2, 4) f32 must be (4) or (1, 4) f32');
    for (const t of [x, w, w3, r, b]) t.release();
  });
});
