import { describe, expect, it } from 'vitest';
import { upsampleNearest, upsampleNearest2x } from '../../src/ops/upsample.js';
import { uploadAs } from '../../src/ops/cast.js';
import { numel } from '../../src/tensor.js';
import { upsampleRef } from '../reference/upsample.js';
import { dtypes, randn, rng, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, input, poisonNextOutput } from '../helpers/ops.js';

// upsampleNearest copies values bit for bit, so every comparison is exact (tolerance 0).

describe('upsampleNearest', () => {
  // (input shape, output H, W): 2× of odd sides; 2·in − 1 (the UNet meeting an odd skip: in =
  // ⌈out/2⌉); a 1×1 plane; equal sizes; shrinking; 6→74 and 14→46, where f32's ⌊i · f32(in/out)⌋
  // is one below the exact ⌊i · in/out⌋ (i = 37, 23), so only PyTorch's float rule passes.
  const cases: Array<[number[], number, number]> = [
    [[2, 3, 5, 7], 10, 14],
    [[1, 3, 5, 6], 9, 11],
    [[2, 2, 1, 1], 3, 2],
    [[1, 2, 4, 3], 4, 3],
    [[2, 2, 3, 7], 7, 5],
    [[1, 2, 6, 14], 74, 46],
  ];
  it("resizes with PyTorch's nearest index rule, both dtypes", async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      for (const [shape, outH, outW] of cases) {
        const x = input(gpu, randn(rng(numel(shape) + outH), numel(shape)), shape, dtype);
        const outShape = [shape[0]!, shape[1]!, outH, outW];
        const poisoned = poisonNextOutput(gpu, outShape, dtype);
        const out = upsampleNearest(x.t, outH, outW);
        expect(out.shape).toEqual(outShape);
        expect(out.buffer).toBe(poisoned);
        expect(await out.read(), `${shape} → ${outH}×${outW} ${dtype}`).toEqual(upsampleRef(x.v, shape, outH, outW));
        x.t.release();
        out.release();
      }
    }
  });

  it('upsampleNearest2x repeats every pixel 2×2', async () => {
    const gpu = await testGpu();
    const shape = [2, 3, 5, 7];
    const x = input(gpu, randn(rng(3), numel(shape)), shape, 'f32');
    const poisoned = poisonNextOutput(gpu, [2, 3, 10, 14], 'f32');
    const out = upsampleNearest2x(x.t);
    expect(out.buffer).toBe(poisoned);
    const want = new Float32Array(2 * 3 * 10 * 14).map((_, i) => {
      const [p, y, c] = [Math.floor(i / 140), Math.floor(i / 14) % 10, i % 14];
      return x.v[(p * 5 + (y >> 1)) * 7 + (c >> 1)]!;
    });
    expect(await out.read()).toEqual(want);
    x.t.release();
    out.release();
  });

  it('splits over whole planes when the output exceeds the binding limit', async () => {
    const gpu = await gpuWithBindingLimit(1024);
    for (const dtype of await dtypes()) {
      // 8×8 planes: 256 (f32) / 128 (f16) bytes in; out 16×16 (1024 / 512 bytes) or 12×16 (768 /
      // 384 bytes). 1 KiB bindings hold one or two output planes, so 15 planes take 15 or 8 windows.
      const shape = [3, 5, 8, 8];
      for (const [outH, outW] of [[16, 16], [12, 16]] as const) {
        const x = input(gpu, randn(rng(7 + outH), numel(shape)), shape, dtype);
        const poisoned = poisonNextOutput(gpu, [3, 5, outH, outW], dtype);
        const out = upsampleNearest(x.t, outH, outW);
        expect(out.buffer).toBe(poisoned);
        expect(await out.read(), `${outH}×${outW} ${dtype}`).toEqual(upsampleRef(x.v, shape, outH, outW));
        x.t.release();
        out.release();
      }
    }
  });

  it('rejects a non-4-D input and a bad size', async () => {
    const gpu = await testGpu();
    const x = uploadAs(gpu, new Float32Array(6), 'f32', [2, 3], 'f32');
    expect(() => upsampleNearest(x, 4, 6)).toThrow(/upsampleNearest: expected \(B, C, H, W\), got \(2, 3\)/);
    const y = x.reshape([1, 1, 2, 3]);
    expect(() => upsampleNearest(y, 0, 6)).toThrow(/output size 0×6/);
    expect(() => upsampleNearest(y, 4, 2.5)).toThrow(/output size 4×2.5/);
    x.release();
  });
});

