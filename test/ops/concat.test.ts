import { describe, expect, it } from 'vitest';
import { concat } from '../../src/ops/concat.js';
import { uploadAs } from '../../src/ops/cast.js';
import { numel } from '../../src/tensor.js';
import { concatRef } from '../reference/concat.js';
import { dtypes, randn, rng, testGpu } from '../helpers/gpu.js';
import { input, poisonNextOutput } from '../helpers/ops.js';

// concat copies values bit for bit, so every comparison is exact (tolerance 0).

describe('concat', () => {
  // (axis, shapes): UNet skip concat (vec4 rows), odd rows (scalar path), prompt-embed concat
  // along the last axis, a negative axis, a single input, batch axis.
  const cases: Array<[number, number[][]]> = [
    [1, [[2, 3, 4, 4], [2, 5, 4, 4], [2, 1, 4, 4]]],
    [1, [[2, 3, 3, 5], [2, 2, 3, 5]]],
    [2, [[1, 7, 24], [1, 7, 32]]],
    [-1, [[2, 3, 5], [2, 3, 3], [2, 3, 1]]],
    [0, [[3, 9]]],
    [0, [[1, 6], [3, 6], [2, 6]]],
  ];
  it('joins along any axis, any number of inputs, both dtypes', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      for (const [axis, shapes] of cases) {
        const parts = shapes.map((s, i) => ({ ...input(gpu, randn(rng(100 * i + numel(s)), numel(s)), s, dtype), shape: s }));
        const ax = axis < 0 ? axis + shapes[0]!.length : axis;
        const outShape = shapes[0]!.map((d, k) => (k === ax ? shapes.reduce((sum, s) => sum + s[k]!, 0) : d));
        const poisoned = poisonNextOutput(gpu, outShape, dtype);
        const out = concat(parts.map((p) => p.t), axis);
        expect(out.shape).toEqual(outShape);
        expect(out.buffer).toBe(poisoned);
        expect(await out.read(), `axis ${axis} ${JSON.stringify(shapes)} ${dtype}`).toEqual(concatRef(parts, ax));
        for (const p of parts) p.t.release();
        out.release();
      }
    }
  });

  it('rejects mismatched shapes, bad axes and empty lists', async () => {
    const gpu = await testGpu();
    const a = uploadAs(gpu, new Float32Array(6), 'f32', [2, 3], 'f32');
    const b = uploadAs(gpu, new Float32Array(8), 'f32', [2, 4], 'f32');
    expect(() => concat([a, b], 0)).toThrow(/concat: shapes \(2, 3\), \(2, 4\) differ outside axis 0/);
    expect(() => concat([a, b], 2)).toThrow(/axis 2 out of range/);
    expect(() => concat([], 0)).toThrow(/no tensors/);
    expect(concat([a, b], 1).shape).toEqual([2, 7]);
    a.release();
    b.release();
  });
});

