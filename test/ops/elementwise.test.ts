import { describe, expect, it } from 'vitest';
import { alignedWindows } from '../../src/ops/aligned-windows.js';
import { add, axpby, gelu, geglu, mul, quickGelu, silu } from '../../src/ops/elementwise.js';
import { numel, Tensor, type DType } from '../../src/tensor.js';
import { dtypes, randn, rng, relL2, roundToF16, testGpu } from '../helpers/gpu.js';
import { poisonNextOutput, withBindingLimit } from '../helpers/ops.js';

// Float64 references: the specifications, written plainly.

/** erf by its Taylor series (|z| < 2.5, where it converges without cancellation trouble). */
function erfSeries(z: number): number {
  let term = z;
  let sum = z;
  for (let n = 1; Math.abs(term) > 1e-18 * Math.abs(sum); n++) {
    term *= (-z * z) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** erfc(z) = 1 − erf(z) in float64, accurate in both tails (continued fraction for z ≥ 2.5). */
function erfc(z: number): number {
  if (z < -2.5) return 2 - erfc(-z);
  if (z < 2.5) return 1 - erfSeries(z);
  let k = z;
  for (let n = 200; n >= 1; n--) k = z + n / 2 / k;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * k);
}

const REF = {
  silu: (x: number) => x / (1 + Math.exp(-x)),
  gelu: (x: number) => x * 0.5 * erfc(-x / Math.SQRT2),
  // 0.5·x·(1 + tanh u) written as x / (1 + e^(−2u)): the same number without the float64
  // cancellation of 1 + tanh u in the negative tail.
  geluTanh: (x: number) => x / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  quickGelu: (x: number) => x / (1 + Math.exp(-1.702 * x)),
};

/** A tensor of `dtype` from random values, and the values it really holds. */
function upload(gpu: Awaited<ReturnType<typeof testGpu>>, values: Float32Array, shape: readonly number[], dtype: DType) {
  return { t: Tensor.upload(gpu, values, 'f32', shape, dtype), v: dtype === 'f16' ? roundToF16(values) : values };
}

// f32: a few roundings of f32 math (exp, one division) stay near 1e-7, far inside 2e-6.
// f16: storing the output rounds by up to 2^-11 relative; relL2 of that is ≈3e-4 < 1e-3.
const TOL: Record<DType, number> = { f32: 2e-6, f16: 1e-3 };

describe('float64 reference erfc', () => {
  it('matches tabulated values', () => {
    const table: Array<[number, number]> = [
      [0.5, 0.4795001221869535], // erfc(0.5)
      [1, 0.15729920705028513],
      [2.5, 4.069520174449590e-4],
      [4, 1.541725790028002e-8],
      [-1, 1.8427007929497148],
    ];
    for (const [z, want] of table) expect(Math.abs(erfc(z) - want) / want).toBeLessThan(1e-13);
  });
});

describe('activations', () => {
  const ops = [
    ['silu', silu, REF.silu],
    ['gelu', (x: Tensor) => gelu(x, 'none'), REF.gelu],
    ['gelu tanh', (x: Tensor) => gelu(x, 'tanh'), REF.geluTanh],
    ['quickGelu', quickGelu, REF.quickGelu],
    ['axpby(α, x)', (x: Tensor) => axpby(-1.75, x), (x: number) => -1.75 * x],
  ] as const;
  // 1 and 1003: scalar path; 4100: vec4 path.
  for (const [name, op, ref] of ops) {
    it(`${name} matches float64 on odd and vec4 sizes, both dtypes`, async () => {
      const gpu = await testGpu();
      for (const dtype of await dtypes()) {
        for (const n of [1, 1003, 4100]) {
          const { t, v } = upload(gpu, randn(rng(n), n, 3), [n], dtype);
          const poisoned = poisonNextOutput(gpu, [n], dtype);
          const out = op(t);
          expect(out.buffer).toBe(poisoned);
          const err = relL2(await out.read(), Array.from(v, ref));
          expect(err, `${name} ${dtype} n=${n}`).toBeLessThan(TOL[dtype]);
          t.release();
          out.release();
        }
      }
    });
  }

  it('keeps relative accuracy over the whole line, tails included (f32)', async () => {
    const gpu = await testGpu();
    const xs = Float32Array.from([...Array.from({ length: 2401 }, (_, i) => -12 + i * 0.01), -100, -85, -40, 40, 85, 100]);
    const x = Tensor.upload(gpu, xs, 'f32', [xs.length], 'f32');
    // Each tail is x·e^(−a) with a = |x| (silu), 1.702|x|, x²/2 (gelu), 2|u| (gelu tanh).
    const u = (v: number): number => Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3);
    const cases = [
      ['silu', silu, REF.silu, (v: number) => Math.abs(v)],
      ['quickGelu', quickGelu, REF.quickGelu, (v: number) => 1.702 * Math.abs(v)],
      ['gelu', (t: Tensor) => gelu(t, 'none'), REF.gelu, (v: number) => (v * v) / 2],
      ['gelu tanh', (t: Tensor) => gelu(t, 'tanh'), REF.geluTanh, (v: number) => 2 * Math.abs(u(v))],
    ] as const;
    for (const [name, op, ref, exponent] of cases) {
      const out = op(x);
      const got = await out.read();
      xs.forEach((xi, i) => {
        const want = ref(xi);
        // a is an f32 value: each of the ~5 roundings on its way (scaling x, squaring, adding
        // the erfc fit, exp's own reduction) moves e^(−a) by a·2^-24 relative.
        const bound = 1e-6 + 5 * 2 ** -24 * exponent(xi);
        // Where e^(−a) or the result leave f32's normal range, GPUs may flush them to zero.
        if (Math.min(Math.exp(-exponent(xi)), Math.abs(want)) >= 2 ** -126) expect(Math.abs(got[i]! - want) / Math.abs(want), `${name}(${xi})`).toBeLessThan(bound);
      });
      out.release();
    }
    x.release();
  });

  it('geglu: hidden half times gelu of the gate half', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      for (const shape of [[3, 5, 14], [2, 7, 24]]) {
        const n = shape[2]! / 2;
        const rows = numel(shape) / shape[2]!;
        const { t, v } = upload(gpu, randn(rng(numel(shape)), numel(shape), 2), shape, dtype);
        const outShape = [shape[0]!, shape[1]!, n];
        const poisoned = poisonNextOutput(gpu, outShape, dtype);
        const out = geglu(t);
        expect(out.shape).toEqual(outShape);
        expect(out.buffer).toBe(poisoned);
        const want = new Float64Array(rows * n);
        for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) want[r * n + j] = v[r * 2 * n + j]! * REF.gelu(v[r * 2 * n + n + j]!);
        expect(relL2(await out.read(), want), `geglu ${dtype} ${shape}`).toBeLessThan(TOL[dtype]);
        t.release();
        out.release();
      }
    }
  });
});

/** out[i] = f(a[i], b[broadcast index of i]) in float64, by explicit coordinates. */
function broadcastRef(a: Float32Array, aShape: readonly number[], b: Float32Array, bShape: readonly number[], f: (x: number, y: number) => number): Float64Array {
  const out = new Float64Array(a.length);
  const off = aShape.length - bShape.length;
  for (let i = 0; i < a.length; i++) {
    let rest = i;
    let j = 0;
    let bStride = 1;
    for (let k = aShape.length - 1; k >= 0; k--) {
      const coord = rest % aShape[k]!;
      rest = Math.floor(rest / aShape[k]!);
      const bd = k >= off ? bShape[k - off]! : 1;
      if (bd !== 1) j += coord * bStride;
      bStride *= bd;
    }
    out[i] = f(a[i]!, b[j]!);
  }
  return out;
}

describe('broadcast add / mul / axpby', () => {
  const cases: Array<[number[], number[]]> = [
    [[2, 3, 5, 7], [2, 3, 1, 1]], // resnet time embedding, H·W odd: scalar path
    [[2, 3, 4, 4], [2, 3, 1, 1]], // same with H·W = 16: vec4 a, splatted b
    [[2, 9, 12], [12]], // (B, L, C) + (C): vec4 a and b
    [[2, 9, 13], [13]], // odd C
    [[3, 5, 7], [1]], // scalar-like
    [[4, 6, 10], [4, 6, 10]], // same shape
    [[2, 3, 5, 7], [3, 1, 7]], // broadcast in the middle: four merged dims
    [[1, 6, 1, 8], [6, 1, 8]], // size-1 dims of a
  ];
  const ops = [
    ['add', add, (x: number, y: number) => x + y],
    ['mul', mul, (x: number, y: number) => x * y],
    ['axpby', (x: Tensor, y: Tensor) => axpby(0.75, x, -1.25, y), (x: number, y: number) => 0.75 * x - 1.25 * y],
  ] as const;
  for (const [name, op, f] of ops) {
    it(`${name} over broadcasting shapes, both dtypes`, async () => {
      const gpu = await testGpu();
      for (const dtype of await dtypes()) {
        for (const [aShape, bShape] of cases) {
          const random = rng(numel(aShape) * 31 + numel(bShape));
          const a = upload(gpu, randn(random, numel(aShape)), aShape, dtype);
          const b = upload(gpu, randn(random, numel(bShape)), bShape, dtype);
          const poisoned = poisonNextOutput(gpu, aShape, dtype);
          const out = op(a.t, b.t);
          expect(out.shape).toEqual(aShape);
          expect(out.buffer).toBe(poisoned);
          const err = relL2(await out.read(), broadcastRef(a.v, aShape, b.v, bShape, f));
          // f32: one or two correctly rounded operations per element (≈1e-7).
          expect(err, `${name} ${dtype} ${aShape} ∘ ${bShape}`).toBeLessThan(TOL[dtype]);
          for (const t of [a.t, b.t, out]) t.release();
        }
      }
    });
  }

  it('rejects shapes that do not broadcast and mixed dtypes', async () => {
    const gpu = await testGpu();
    const a = Tensor.upload(gpu, new Float32Array(24), 'f32', [2, 3, 4], 'f32');
    const b = Tensor.upload(gpu, new Float32Array(6), 'f32', [2, 3], 'f32');
    expect(() => add(a, b)).toThrow(/add: cannot broadcast \(2, 3\) onto \(2, 3, 4\)/);
    expect(() => mul(b, a)).toThrow(/cannot broadcast/);
    if (gpu.f16) {
      const h = Tensor.upload(gpu, new Float32Array(4), 'f32', [4], 'f16');
      expect(() => add(a, h)).toThrow(/dtypes differ/);
      h.release();
    }
    a.release();
    b.release();
  });
});

describe('binding windows', () => {
  it('tiles units contiguously at 256-byte aligned offsets within the limit', async () => {
    const gpu = await testGpu();
    await withBindingLimit(gpu, 4096, () => {
      for (const unitBytes of [[4], [2], [28, 14], [12, 48], [6]]) {
        const windows = alignedWindows('test', gpu, 5000, unitBytes);
        expect(windows.length).toBeGreaterThan(1);
        let next = 0;
        for (const { start, count } of windows) {
          expect(start).toBe(next);
          for (const b of unitBytes) {
            expect((start * b) % 256).toBe(0);
            expect(count * b).toBeLessThanOrEqual(4096);
          }
          next = start + count;
        }
        expect(next).toBe(5000);
      }
      expect(alignedWindows('test', gpu, 1000, [4])).toEqual([{ start: 0, count: 1000 }]);
      // 500-byte units need 64-unit alignment: no window can fit.
      expect(() => alignedWindows('test', gpu, 10, [500])).toThrow(/test: cannot split 10 units of 500 bytes/);
    });
  });

  it('splits elementwise ops over windows when tensors exceed the binding limit', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      // With 1 KiB bindings: 2100 elements are 9 (f32) or 5 (f16) windows, the last one
      // partial; 2121 is the scalar path; GEGLU rows of 2·128 are one or two rows a window.
      const shape = [3, 7, 100];
      const random = rng(2100);
      const a = upload(gpu, randn(random, 2100), shape, dtype);
      const same = upload(gpu, randn(random, 2100), shape, dtype);
      const row = upload(gpu, randn(random, 100), [100], dtype);
      const odd = upload(gpu, randn(random, 2121), [2121], dtype);
      const g = upload(gpu, randn(random, 3 * 7 * 256), [3, 7, 256], dtype);
      await withBindingLimit(gpu, 1024, async () => {
        const checks: Array<[string, Tensor, ArrayLike<number>]> = [];
        const run = (name: string, outShape: number[], fn: () => Tensor, want: ArrayLike<number>): void => {
          const poisoned = poisonNextOutput(gpu, outShape, dtype);
          const out = fn();
          expect(out.buffer).toBe(poisoned);
          checks.push([name, out, want]);
        };
        run('add same shape', shape, () => add(a.t, same.t), broadcastRef(a.v, shape, same.v, shape, (x, y) => x + y));
        run('mul broadcast row', shape, () => mul(a.t, row.t), broadcastRef(a.v, shape, row.v, [100], (x, y) => x * y));
        run('silu', [2121], () => silu(odd.t), Array.from(odd.v, REF.silu));
        const wantGeglu = Array.from({ length: 21 * 128 }, (_, i) => {
          const r = Math.floor(i / 128);
          const j = i % 128;
          return g.v[r * 256 + j]! * REF.gelu(g.v[r * 256 + 128 + j]!);
        });
        run('geglu', [3, 7, 128], () => geglu(g.t), wantGeglu);
        for (const [name, out, want] of checks) {
          expect(relL2(await out.read(), want), `${name} ${dtype}`).toBeLessThan(TOL[dtype]);
          out.release();
        }
      });
      for (const t of [a.t, same.t, row.t, odd.t, g.t]) t.release();
    }
  });

  it('covers grids folded past 65535 workgroups', async () => {
    const gpu = await testGpu();
    // 256·65535 + 1001 elements (odd: one per invocation) need a second row of workgroups.
    const n = 256 * 65535 + 1001;
    const values = Float32Array.from({ length: n }, (_, i) => (i % 2003) - 1001);
    const x = Tensor.upload(gpu, values, 'f32', [n], 'f32');
    const poisoned = poisonNextOutput(gpu, [n], 'f32');
    const out = axpby(0.5, x); // halving small integers is exact
    expect(out.buffer).toBe(poisoned);
    const got = await out.read();
    let wrong = 0;
    for (let i = 0; i < n; i++) if (got[i] !== 0.5 * values[i]!) wrong++;
    expect(wrong).toBe(0);
    x.release();
    out.release();
  });

  it('reports a broadcast operand too large to bind whole', async () => {
    const gpu = await testGpu();
    const a = Tensor.upload(gpu, new Float32Array(2 * 300), 'f32', [2, 300], 'f32');
    const b = Tensor.upload(gpu, new Float32Array(300), 'f32', [1, 300], 'f32');
    await withBindingLimit(gpu, 1024, () => {
      expect(() => add(a, b)).toThrow(/add: f32 tensor \(1, 300\) is 1200 bytes, over this device's 1024-byte storage binding limit/);
    });
    a.release();
    b.release();
  });
});
