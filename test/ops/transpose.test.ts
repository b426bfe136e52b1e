import { describe, expect, it } from 'vitest';
import { transpose12 } from '../../src/ops/transpose.js';
import { numel } from '../../src/tensor.js';
import { transposeRef } from '../reference/transpose.js';
import { dtypes, randn, rng, testGpu } from '../helpers/gpu.js';
import { input, poisonNextOutput } from '../helpers/ops.js';

// transpose12 copies values bit for bit, so every comparison is exact (tolerance 0).

describe('transpose12', () => {
  it('swaps the last two dims across tile edges, both dtypes', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      // 37×45: partial 32-tiles on both edges; 1×64×32: whole tiles; 2×1×5: a single row.
      for (const shape of [[3, 37, 45], [1, 64, 32], [2, 1, 5]]) {
        const [b, x, y] = shape as [number, number, number];
        const src = input(gpu, randn(rng(numel(shape)), numel(shape)), shape, dtype);
        const poisoned = poisonNextOutput(gpu, [b, y, x], dtype);
        const out = transpose12(src.t);
        expect(out.shape).toEqual([b, y, x]);
        expect(out.buffer).toBe(poisoned);
        expect(await out.read(), `${shape} ${dtype}`).toEqual(transposeRef(src.v, [b, x, y]));
        src.t.release();
        out.release();
      }
    }
  });
});
