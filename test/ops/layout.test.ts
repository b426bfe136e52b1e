import { describe, expect, it } from 'vitest';
import { concat, transpose12, upsampleNearest2x } from '../../src/ops/elementwise.js';
import { upsampleNearest } from '../../src/ops/layout.js';
import { numel, Tensor, type DType } from '../../src/tensor.js';
import { dtypes, randn, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { poisonNextOutput, withBindingLimit } from '../helpers/ops.js';

// These ops copy values bit for bit, so every comparison is exact (tolerance 0).

type Gpu = Awaited<ReturnType<typeof testGpu>>;

/** A random tensor of `dtype` and the values it really holds. */
function random(gpu: Gpu, shape: readonly number[], dtype: DType, seed: number): { t: Tensor; v: Float32Array } {
  const values = randn(rng(seed), numel(shape));
  return { t: Tensor.upload(gpu, values, 'f32', shape, dtype), v: dtype === 'f16' ? roundToF16(values) : values };
}

/** aten's nearest_idx, literally: copy, the 2× shift, else ⌊i · f32(in/out)⌋ in f32, clamped. */
function nearestIndex(i: number, size: number, outSize: number): number {
  if (outSize === size) return i;
  if (outSize === 2 * size) return i >> 1;
  const scale = Math.fround(size / outSize);
  return Math.min(Math.floor(Math.fround(i * scale)), size - 1);
}

function upsampleRef(v: Float32Array, [b, c, h, w]: readonly number[], outH: number, outW: number): Float32Array {
  const out = new Float32Array(b! * c! * outH * outW);
  for (let p = 0; p < b! * c!; p++) {
    for (let y = 0; y < outH; y++) {
      const sy = nearestIndex(y, h!, outH);
      for (let x = 0; x < outW; x++) out[(p * outH + y) * outW + x] = v[(p * h! + sy) * w! + nearestIndex(x, w!, outW)]!;
    }
  }
  return out;
}

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
        const x = random(gpu, shape, dtype, numel(shape) + outH);
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
    const x = random(gpu, shape, 'f32', 3);
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
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      // 8×8 planes: 256 (f32) / 128 (f16) bytes in; out 16×16 (1024 / 512 bytes) or 12×16 (768 /
      // 384 bytes). 1 KiB bindings hold one or two output planes, so 15 planes take 15 or 8 windows.
      const shape = [3, 5, 8, 8];
      for (const [outH, outW] of [[16, 16], [12, 16]] as const) {
        const x = random(gpu, shape, dtype, 7 + outH);
        const out = await withBindingLimit(gpu, 1024, () => {
          poisonNextOutput(gpu, [3, 5, outH, outW], dtype);
          return upsampleNearest(x.t, outH, outW);
        });
        expect(await out.read(), `${outH}×${outW} ${dtype}`).toEqual(upsampleRef(x.v, shape, outH, outW));
        x.t.release();
        out.release();
      }
    }
  });

  it('rejects a non-4-D input and a bad size', async () => {
    const gpu = await testGpu();
    const x = Tensor.upload(gpu, new Float32Array(6), 'f32', [2, 3], 'f32');
    expect(() => upsampleNearest(x, 4, 6)).toThrow(/upsampleNearest: expected \(B, C, H, W\), got \(2, 3\)/);
    const y = x.reshape([1, 1, 2, 3]);
    expect(() => upsampleNearest(y, 0, 6)).toThrow(/output size 0×6/);
    expect(() => upsampleNearest(y, 4, 2.5)).toThrow(/output size 4×2.5/);
    x.release();
  });
});

function concatRef(parts: Array<{ v: Float32Array; shape: readonly number[] }>, axis: number): Float32Array {
  const outer = numel(parts[0]!.shape.slice(0, axis));
  const inner = numel(parts[0]!.shape.slice(axis + 1));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const { v, shape } of parts) {
      const block = shape[axis]! * inner;
      for (let k = 0; k < block; k++) out.push(v[o * block + k]!);
    }
  }
  return Float32Array.from(out);
}

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
        const parts = shapes.map((s, i) => ({ ...random(gpu, s, dtype, 100 * i + numel(s)), shape: s }));
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
    const a = Tensor.upload(gpu, new Float32Array(6), 'f32', [2, 3], 'f32');
    const b = Tensor.upload(gpu, new Float32Array(8), 'f32', [2, 4], 'f32');
    expect(() => concat([a, b], 0)).toThrow(/concat: shapes \(2, 3\), \(2, 4\) differ outside axis 0/);
    expect(() => concat([a, b], 2)).toThrow(/axis 2 out of range/);
    expect(() => concat([], 0)).toThrow(/no tensors/);
    expect(concat([a, b], 1).shape).toEqual([2, 7]);
    a.release();
    b.release();
  });
});

describe('transpose12', () => {
  it('swaps the last two dims across tile edges, both dtypes', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      // 37×45: partial 32-tiles on both edges; 1×64×32: whole tiles; 2×1×5: a single row.
      for (const shape of [[3, 37, 45], [1, 64, 32], [2, 1, 5]]) {
        const [b, x, y] = shape as [number, number, number];
        const src = random(gpu, shape, dtype, numel(shape));
        const poisoned = poisonNextOutput(gpu, [b, y, x], dtype);
        const out = transpose12(src.t);
        expect(out.shape).toEqual([b, y, x]);
        expect(out.buffer).toBe(poisoned);
        const want = new Float32Array(b * x * y);
        for (let i = 0; i < b; i++) for (let r = 0; r < x; r++) for (let c = 0; c < y; c++) want[(i * y + c) * x + r] = src.v[(i * x + r) * y + c]!;
        expect(await out.read(), `${shape} ${dtype}`).toEqual(want);
        src.t.release();
        out.release();
      }
    }
  });
});
