import { describe, expect, it } from 'vitest';
import { f16ArrayToF32, f32ArrayToF16 } from '../../src/f16.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { countNonFinite, FiniteCheck } from '../../src/ops/finite.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { countNonFinite as reference } from '../reference/finite.js';
import { dtypes, randn, rng, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, poisonPooled } from '../helpers/ops.js';

/** n values with NaN, ±Inf and (for f16) finite f32 values past f16's range sprinkled in, as
 *  the tensor holds them: f32 values, or f16 bits with the f32 values they stand for. */
function poisonedValues(n: number, dtype: DType, seed: number): { data: Float32Array | Uint16Array; values: Float32Array } {
  const random = rng(seed);
  const values = randn(random, n, 3);
  const specials = [NaN, Infinity, -Infinity, 1e5, -7e4];
  for (let k = 0; k < Math.max(1, n >> 5); k++) values[Math.floor(random() * n)] = specials[k % specials.length]!;
  if (dtype === 'f32') return { data: values, values };
  const bits = f32ArrayToF16(values);
  return { data: bits, values: f16ArrayToF32(bits) };
}

/** The counts buffer with every slot at `fill`, and its values read back. */
function countsBuffer(gpu: Gpu, slots: number, fill: number): { buffer: GPUBuffer; read: () => Promise<Uint32Array> } {
  const buffer = gpu.pool.allocateExact(4 * slots, 'counts');
  gpu.write(buffer, new Uint32Array(slots).fill(fill));
  return { buffer, read: async () => new Uint32Array(await gpu.read(buffer, 0, 4 * slots)) };
}

describe('finite kernel', () => {
  // Counts are integers: exact. Odd lengths exercise the f16 half-word tail; a 1 KiB binding
  // limit splits 4097 elements into aligned windows (the last one partial).
  for (const [n, limit] of [[1, 0], [7, 0], [1000, 0], [4097, 0], [4097, 1024]] as const) {
    it(`counts NaN and ±Inf in ${n} elements${limit ? `, ${limit}-byte bindings` : ''}, adding to its slot only`, async () => {
      const gpu = limit ? await gpuWithBindingLimit(limit) : await testGpu();
      for (const dtype of await dtypes()) {
        const { data, values } = poisonedValues(n, dtype, n + limit);
        const want = reference(values);
        expect(want, 'the case has non-finite values').toBeGreaterThan(0);
        // The tensor in a NaN-filled pooled buffer of its size class: words past the tensor
        // (size-class slack) must not be counted.
        const [poisoned] = poisonPooled(gpu, [n], dtype, 1);
        const x = Tensor.upload(gpu, data, dtype, [n], dtype);
        expect(x.buffer).toBe(poisoned);
        // Slots prefilled with 7: the kernel adds to slot 2 and leaves the others alone.
        const counts = countsBuffer(gpu, 4, 7);
        countNonFinite(x, counts.buffer, 2);
        expect([...(await counts.read())], dtype).toEqual([7, 7, 7 + want, 7]);
        x.release();
        counts.buffer.destroy();
      }
    });
  }

  it('a finite tensor counts zero, and an f16 half past the last element is not counted', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      const n = 5;
      const x = Tensor.empty(gpu, [n], dtype);
      // The word holding element 4 also holds a NaN half just past the tensor (f16 only).
      const raw = dtype === 'f16' ? f32ArrayToF16(new Float32Array([1, 2, 3, 4, 5, NaN])) : new Float32Array([1, 2, 3, 4, 5]);
      gpu.write(x.buffer, raw);
      const counts = countsBuffer(gpu, 1, 0);
      countNonFinite(x, counts.buffer, 0);
      expect([...(await counts.read())], dtype).toEqual([0]);
      x.release();
      counts.buffer.destroy();
    }
  });

  it('FiniteCheck: many tensors, one readback, the failing ones by index with their counts', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      const tensors = [3, 0, 11, 130].map((n, i) => {
        const { data, values } = n === 0 ? { data: dtype === 'f32' ? new Float32Array(64) : new Uint16Array(64), values: new Float32Array(64) } : poisonedValues(64 + n, dtype, i);
        return { t: Tensor.upload(gpu, data, dtype, [data.length], dtype), want: reference(values) };
      });
      const check = new FiniteCheck(gpu, tensors.length);
      tensors.forEach(({ t }, i) => check.add(t, i));
      const expected = tensors.flatMap(({ want }, index) => (want > 0 ? [{ index, count: want }] : []));
      expect(expected.map((e) => e.index)).toEqual([0, 2, 3]);
      expect(await check.failures(), dtype).toEqual(expected);
      check.release();
      for (const { t } of tensors) t.release();
    }
  });
});
