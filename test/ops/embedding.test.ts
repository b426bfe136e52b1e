import { describe, expect, it } from 'vitest';
import { embedding } from '../../src/ops/embedding.js';
import { uploadAs } from '../../src/ops/cast.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { embeddingRef } from '../reference/embedding.js';
import { dtypes, randint, randn, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, poisonNextOutput, poisonPooled } from '../helpers/ops.js';

type Gpu = Awaited<ReturnType<typeof testGpu>>;

function table(gpu: Gpu, v: number, c: number, dtype: DType, seed: number): { t: Tensor; values: Float32Array } {
  const values = randn(rng(seed), v * c);
  return { t: uploadAs(gpu, values, 'f32', [v, c], dtype), values: dtype === 'f16' ? roundToF16(values) : values };
}

// Gathers copy rows bit for bit: every comparison is exact.
describe('embedding', () => {
  it('gathers rows for host ids (repeats, first and last row), both dtypes', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      for (const [v, c] of [[50, 12], [37, 7]]) {
        const { t, values } = table(gpu, v, c, dtype, v * c);
        const random = rng(v);
        const ids = Int32Array.from({ length: 23 }, () => randint(random, 0, v - 1));
        ids.set([0, v - 1, ids[2]!], 5);
        const poisoned = poisonNextOutput(gpu, [23, c], dtype);
        const out = embedding(t, ids);
        expect(out.shape).toEqual([23, c]);
        expect(out.buffer).toBe(poisoned);
        expect(await out.read(), `${v}×${c} ${dtype}`).toEqual(embeddingRef(values, v, c, ids));
        t.release();
        out.release();
      }
    }
  });

  it('gathers with GPU ids of any shape; out-of-range ids give zero rows', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      const { t, values } = table(gpu, 41, 8, dtype, 3);
      const ids = Float32Array.from([3, 40, 0, -1, 41, 7, 7, 1000]);
      const idTensor = uploadAs(gpu, ids, 'f32', [2, 4], 'f32');
      const poisoned = poisonNextOutput(gpu, [2, 4, 8], dtype);
      const out = embedding(t, idTensor);
      expect(out.shape).toEqual([2, 4, 8]);
      expect(out.buffer).toBe(poisoned);
      expect(await out.read()).toEqual(embeddingRef(values, 41, 8, ids));
      for (const x of [t, idTensor, out]) x.release();
    }
  });

  it('binds a table larger than the binding limit in row windows', async () => {
    for (const dtype of await dtypes()) {
      // 1 KiB bindings: 8 (f32) or 16 (f16) rows of 32 per window, so 300 rows are 38 or 19
      // windows. Rows of 7 need 64- (f32) or 128-row (f16) aligned windows: 128 rows a
      // window, 3 windows.
      for (const [v, c] of [[300, 32], [300, 7]]) {
        const limit = c === 7 ? 128 * 7 * (dtype === 'f32' ? 4 : 2) : 1024;
        const gpu = await gpuWithBindingLimit(limit);
        const { t, values } = table(gpu, v, c, dtype, v + c);
        const random = rng(c);
        // 6 ids: the output, bound whole, stays within the limit too.
        const hostIds = Int32Array.from({ length: 6 }, () => randint(random, 0, v - 1));
        hostIds.set([0, v - 1], 0);
        const gpuIds = Float32Array.from([...hostIds, -5, v]);
        const idTensor = uploadAs(gpu, gpuIds, 'f32', [gpuIds.length], 'f32');
        // Host ids are uploaded first, possibly into a buffer of the output's size class.
        const poisonedHost = poisonPooled(gpu, [hostIds.length, c], dtype, 2);
        const fromHost = embedding(t, hostIds);
        expect(poisonedHost).toContain(fromHost.buffer);
        const poisonedGpu = poisonNextOutput(gpu, [gpuIds.length, c], dtype);
        const fromGpu = embedding(t, idTensor);
        expect(fromGpu.buffer).toBe(poisonedGpu);
        expect(await fromHost.read(), `host ids ${v}×${c} ${dtype}`).toEqual(embeddingRef(values, v, c, hostIds));
        expect(await fromGpu.read(), `GPU ids ${v}×${c} ${dtype}`).toEqual(embeddingRef(values, v, c, gpuIds));
        for (const x of [t, idTensor, fromHost, fromGpu]) x.release();
      }
    }
  });

  it('rejects host ids outside the table', async () => {
    const gpu = await testGpu();
    const t = uploadAs(gpu, new Float32Array(12), 'f32', [3, 4], 'f32');
    expect(() => embedding(t, Int32Array.from([0, 3]))).toThrow(/embedding: id 3 at 1 outside the table's rows 0..2/);
    t.release();
  });
});
