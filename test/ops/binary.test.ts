import { describe, expect, it } from 'vitest';
import { add, axpby, mul } from '../../src/ops/binary.js';
import { uploadAs } from '../../src/ops/cast.js';
import { numel, Tensor, type DType } from '../../src/tensor.js';
import { binaryRef } from '../reference/binary.js';
import { dtypes, randn, rng, relL2, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, input, poisonNextOutput } from '../helpers/ops.js';

// f32: one or two correctly rounded operations per element (≈1e-7), far inside 2e-6.
// f16: storing the output rounds by up to 2^-11 relative; relL2 of that is ≈3e-4 < 1e-3.
const TOL: Record<DType, number> = { f32: 2e-6, f16: 1e-3 };

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
          const a = input(gpu, randn(random, numel(aShape)), aShape, dtype);
          const b = input(gpu, randn(random, numel(bShape)), bShape, dtype);
          const poisoned = poisonNextOutput(gpu, aShape, dtype);
          const out = op(a.t, b.t);
          expect(out.shape).toEqual(aShape);
          expect(out.buffer).toBe(poisoned);
          const err = relL2(await out.read(), binaryRef(a.v, aShape, b.v, bShape, f));
          // f32: one or two correctly rounded operations per element (≈1e-7).
          expect(err, `${name} ${dtype} ${aShape} ∘ ${bShape}`).toBeLessThan(TOL[dtype]);
          for (const t of [a.t, b.t, out]) t.release();
        }
      }
    });
  }

  it('rejects shapes that do not broadcast and mixed dtypes', async () => {
    const gpu = await testGpu();
    const a = uploadAs(gpu, new Float32Array(24), 'f32', [2, 3, 4], 'f32');
    const b = uploadAs(gpu, new Float32Array(6), 'f32', [2, 3], 'f32');
    expect(() => add(a, b)).toThrow(/add: cannot broadcast \(2, 3\) onto \(2, 3, 4\)/);
    expect(() => mul(b, a)).toThrow(/cannot broadcast/);
    if (gpu.f16) {
      const h = uploadAs(gpu, new Float32Array(4), 'f32', [4], 'f16');
      expect(() => add(a, h)).toThrow(/dtypes differ/);
      h.release();
    }
    a.release();
    b.release();
  });
  it('splits over aligned windows when tensors exceed the binding limit', async () => {
    // With 1 KiB bindings: 2100 elements are 9 (f32) or 5 (f16) windows, the last one partial;
    // a same-shape b splits with a, a broadcast row is bound whole.
    const gpu = await gpuWithBindingLimit(1024);
    for (const dtype of await dtypes()) {
      const shape = [3, 7, 100];
      const random = rng(2100);
      const a = input(gpu, randn(random, 2100), shape, dtype);
      const same = input(gpu, randn(random, 2100), shape, dtype);
      const row = input(gpu, randn(random, 100), [100], dtype);
      const cases: Array<[string, () => Tensor, ArrayLike<number>]> = [
        ['add same shape', () => add(a.t, same.t), binaryRef(a.v, shape, same.v, shape, (x, y) => x + y)],
        ['mul broadcast row', () => mul(a.t, row.t), binaryRef(a.v, shape, row.v, [100], (x, y) => x * y)],
      ];
      for (const [name, op, want] of cases) {
        const poisoned = poisonNextOutput(gpu, shape, dtype);
        const out = op();
        expect(out.buffer).toBe(poisoned);
        expect(relL2(await out.read(), want), `${name} ${dtype}`).toBeLessThan(TOL[dtype]);
        out.release();
      }
      for (const t of [a.t, same.t, row.t]) t.release();
    }
  });

  it('reports a broadcast operand too large to bind whole', async () => {
    const gpu = await gpuWithBindingLimit(1024);
    const a = uploadAs(gpu, new Float32Array(2 * 300), 'f32', [2, 300], 'f32');
    const b = uploadAs(gpu, new Float32Array(300), 'f32', [1, 300], 'f32');
    expect(() => add(a, b)).toThrow(/add: f32 tensor \(1, 300\) is 1200 bytes, over this device's 1024-byte storage binding limit/);
    a.release();
    b.release();
  });
});
