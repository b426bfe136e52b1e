// The Q8 format end to end on the GPU: quantize (kernels/quantize.wgsl) against its reference,
// then the Q8 specializations of matmul, gemv and conv2d against float64 products with the
// dequantized weight — so each kernel's dequantization is checked exactly, apart from the
// quantization error itself (bounded separately).

import { afterAll, describe, expect, it } from 'vitest';
import { f16ArrayToF32 } from '../../src/f16.js';
import { uploadAs } from '../../src/ops/cast.js';
import { conv2d } from '../../src/ops/conv2d.js';
import { linear, type MatmulVariant } from '../../src/ops/matmul.js';
import { Q8Tensor, quantizeInto } from '../../src/ops/quantize.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { conv2dOutShape, conv2dRef, type Pad } from '../reference/conv2d.js';
import { matmulRef } from '../reference/matmul.js';
import { dequantizeRef, q8ScalesRef, q8ValuesRef } from '../reference/quantize.js';
import { dtypes, randn, relL2, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, poisonNextOutput } from '../helpers/ops.js';

const types = await dtypes();

const errors: string[] = [];
const record = (label: string, err: number): number => {
  errors.push(`${label}: ${err.toExponential(2)}`);
  return err;
};
afterAll(() => console.log(`Q8 relative L2 errors:\n  ${errors.join('\n  ')}`));

function values(seed: number, n: number, dtype: DType, scale = 1): Float32Array {
  const v = randn(rng(seed), n, scale);
  return dtype === 'f16' ? roundToF16(v) : v;
}

/** Quantizes `w` on the GPU into a Q8 weight poisoned first (every byte 0xff: values −1, scales
 *  NaN), so a word the kernel skipped shows; returns it and what it holds. */
async function quantizeChecked(gpu: Gpu, w: Float32Array, shape: number[], dtype: DType): Promise<{ q: Q8Tensor; values: Int8Array; scales: Uint16Array }> {
  const t = uploadAs(gpu, w, 'f32', shape, dtype);
  const q = Q8Tensor.empty(gpu, shape, 'q8 (poisoned)');
  gpu.write(q.words.buffer, new Uint8Array(q.byteLength).fill(0xff));
  quantizeInto(t, q);
  t.release();
  return { q, ...(await q.read()) };
}

describe('quantize', () => {
  // Rows of K not a multiple of 32 (a partial last block) nor of 4 (rows straddle words), one
  // row, one column, a zero block (scale 0), and an outlier that makes its block's scale large.
  const shapes: number[][] = [[1, 1], [3, 5], [7, 33], [16, 64], [5, 3, 3, 3], [37, 100]];
  for (const dtype of types) {
    it(`${dtype}: scales and values match the reference; the buffer is fully written`, async () => {
      const gpu = await testGpu();
      let seed = 1;
      for (const shape of shapes) {
        const [rows, ...rest] = shape as [number, ...number[]];
        const k = rest.reduce((a, b) => a * b, 1);
        const w = values(seed++, rows * k, dtype, 0.05);
        if (k >= 33) {
          w.fill(0, 0, 32); // row 0, block 0: all zero
          w[k + 3] = dtype === 'f16' ? 1.5 : 1.4999; // an outlier in row 1, block 0
        }
        const { q, values: got, scales } = await quantizeChecked(gpu, w, shape, dtype);
        const want = q8ScalesRef(w, rows, k);
        // Scales: f16(max / 127); the GPU's f32 division may differ from the exact one by an
        // ulp, which can move the f16 rounding by one f16 ulp (relative 2⁻¹⁰) — no further.
        const s = f16ArrayToF32(scales);
        const sw = f16ArrayToF32(want);
        for (let i = 0; i < want.length; i++) expect(Math.abs(s[i]! - sw[i]!), `${shape} scale ${i}`).toBeLessThanOrEqual(sw[i]! * 2 ** -10);
        if (k >= 33) expect(s[0], `${shape}: zero block`).toBe(0);
        // Values under the GPU's own scales: equal, except where w / s lies within f32 rounding
        // of a .5 tie (then off by one at most).
        const ref = q8ValuesRef(w, scales, rows, k);
        const blocks = Math.ceil(k / 32);
        for (let e = 0; e < rows * k; e++) {
          const scale = s[Math.floor(e / k) * blocks + Math.floor((e % k) / 32)]!;
          const ratio = scale === 0 ? 0 : w[e]! / scale;
          const nearTie = Math.abs(Math.abs(ratio % 1) - 0.5) < 1e-4;
          if (nearTie) expect(Math.abs(got[e]! - ref[e]!), `${shape} value ${e}`).toBeLessThanOrEqual(1);
          else expect(got[e], `${shape} value ${e} (w ${w[e]}, scale ${scale})`).toBe(ref[e]);
        }
        // Round-to-nearest with the block maximum at ±127: |w − q·s| ≤ s/2 everywhere.
        const deq = dequantizeRef(got, scales, rows, k);
        for (let e = 0; e < rows * k; e++) {
          const scale = s[Math.floor(e / k) * blocks + Math.floor((e % k) / 32)]!;
          expect(Math.abs(deq[e]! - w[e]!), `${shape} error at ${e}`).toBeLessThanOrEqual(scale * 0.5 * (1 + 1e-3) + 1e-12);
        }
        q.release();
      }
    });
  }

  it('uploads host values and scales as the kernel lays them out', async () => {
    const gpu = await testGpu();
    const w = values(99, 5 * 37, 'f32', 0.1);
    const { q, values: v, scales } = await quantizeChecked(gpu, w, [5, 37], 'f32');
    const again = Q8Tensor.upload(gpu, v, scales, [5, 37], 'upload');
    const [a, b] = [await gpu.read(q.words.buffer, 0, q.byteLength), await gpu.read(again.words.buffer, 0, again.byteLength)];
    expect(new Uint8Array(b)).toEqual(new Uint8Array(a));
    expect(() => Q8Tensor.upload(gpu, v.subarray(1), scales, [5, 37], 'short')).toThrow(/short: 184 int8 values and 10 scales for a Q8 weight \(5, 37\)/);
    q.release();
    again.release();
  });

  it('bounds the quantization error of Gaussian weights (relative L2 < 1%)', async () => {
    // Blocks of 32 normal values have max ≈ 2.1σ; uniform rounding error s/√12 with s = max/127
    // gives ≈ 0.5% of σ; 1% leaves margin. (A per-row scale over 1280 values, max ≈ 3.4σ, would
    // by the same estimate sit near 0.9%: why the format uses blocks.)
    const gpu = await testGpu();
    const w = values(5, 64 * 1280, 'f32', 0.02);
    const { q, values: v, scales } = await quantizeChecked(gpu, w, [64, 1280], 'f32');
    expect(record('quantization, 64×1280 Gaussian', relL2(dequantizeRef(v, scales, 64, 1280), w))).toBeLessThan(0.01);
    q.release();
  });
});

// The products below use the dequantized weight as the reference's B, so the tolerances are the
// float kernels' (test/ops/matmul.test.ts, conv2d.test.ts): f32 accumulation ~1e-6 (bound
// 1e-5); f16 output rounding 2⁻¹¹ relative (≈3e-4 rms, bound 1e-3).
const TOL: Record<DType, number> = { f32: 1e-5, f16: 1e-3 };

describe('Q8 linear (tiled and gemv)', () => {
  // k % 4 ≠ 0 (scalar loads, rows straddle words), k < 32 and k % 32 ≠ 0 (partial blocks), one
  // row (gemv), 77 rows (tiled), windows of x under a 2 KiB binding limit.
  const cases: Array<{ lead: number[]; k: number; n: number; variant?: MatmulVariant; bias: boolean; residual: boolean; limit?: number }> = [
    { lead: [1], k: 36, n: 5, bias: true, residual: false },
    { lead: [1], k: 13, n: 29, variant: 'gemv', bias: false, residual: true },
    { lead: [2, 3], k: 100, n: 9, variant: 'gemv', bias: true, residual: true },
    { lead: [77], k: 13, n: 29, variant: 'small', bias: true, residual: false },
    { lead: [1, 97], k: 131, n: 67, bias: false, residual: true },
    { lead: [77], k: 64, n: 40, variant: 'medium', bias: true, residual: true },
    { lead: [150], k: 16, n: 24, bias: true, residual: true, limit: 2048 },
  ];
  for (const dtype of types) {
    it(`${dtype}: against float64 with the dequantized weight, outputs poisoned first`, async () => {
      let seed = 10;
      for (const c of cases) {
        const gpu = c.limit ? await gpuWithBindingLimit(c.limit) : await testGpu();
        const m = c.lead.reduce((a, b) => a * b, 1);
        const x = values(seed++, m * c.k, dtype);
        const w = values(seed++, c.n * c.k, dtype, 0.2);
        const bias = c.bias ? values(seed++, c.n, dtype) : null;
        const res = c.residual ? values(seed++, m * c.n, dtype) : null;
        const { q, values: qv, scales } = await quantizeChecked(gpu, w, [c.n, c.k], dtype);
        const tx = uploadAs(gpu, x, 'f32', [...c.lead, c.k], dtype);
        const tb = bias && uploadAs(gpu, bias, 'f32', [c.n], dtype);
        const tr = res && uploadAs(gpu, res, 'f32', [...c.lead, c.n], dtype);
        const poisoned = poisonNextOutput(gpu, [...c.lead, c.n], dtype);
        const out = linear(tx, q, tb, { residual: tr, ...(c.variant ? { variant: c.variant } : {}) });
        expect(out.buffer).toBe(poisoned);
        const want = matmulRef(x, dequantizeRef(qv, scales, c.n, c.k), { batch: 1, m, n: c.n, k: c.k }, { transposeB: true, bBatched: false, bias, residual: res });
        const label = `linear ${dtype} ${c.lead}×${c.k}→${c.n} ${c.variant ?? 'default'}${c.limit ? ' windows' : ''}`;
        expect(record(label, relL2(await out.read(), want)), label).toBeLessThan(TOL[dtype]); // see TOL
        for (const t of [tx, tb, tr, out, q]) t?.release();
      }
    });
  }

  it('rejects a Q8 weight of the wrong K', async () => {
    const gpu = await testGpu();
    const q = Q8Tensor.empty(gpu, [3, 8], 'q');
    const x = Tensor.empty(gpu, [2, 7], 'f32');
    expect(() => linear(x, q)).toThrow(/linear: expected x \(\.\.\., K\) and weight \(N, K\), got x \(2, 7\), weight \(3, 8\)/);
    x.release();
    q.release();
  });
});

describe('Q8 conv2d', () => {
  const cases: Array<{ x: [number, number, number, number]; o: number; k: number; stride: number; pad: Pad; bias: boolean; residual: boolean; limit?: number }> = [
    { x: [2, 5, 9, 11], o: 7, k: 3, stride: 1, pad: [1, 1, 1, 1], bias: true, residual: false }, // K = 45: rows straddle words
    { x: [1, 13, 17, 19], o: 70, k: 3, stride: 1, pad: [1, 1, 1, 1], bias: true, residual: true }, // two N tiles
    { x: [2, 9, 13, 10], o: 11, k: 3, stride: 2, pad: [0, 1, 0, 1], bias: false, residual: false },
    { x: [2, 67, 10, 13], o: 13, k: 1, stride: 1, pad: [0, 0, 0, 0], bias: true, residual: true }, // 1×1, K = 67
    // Channel chunks under a 4 KiB binding: later chunks accumulate, weights indexed mid-row.
    { x: [1, 24, 8, 8], o: 4, k: 3, stride: 1, pad: [1, 1, 1, 1], bias: true, residual: true, limit: 4096 },
  ];
  for (const dtype of types) {
    it(`${dtype}: against float64 with the dequantized weight, outputs poisoned first`, async () => {
      let seed = 50;
      for (const c of cases) {
        const gpu = c.limit ? await gpuWithBindingLimit(c.limit) : await testGpu();
        const [B, C, H, W] = c.x;
        const shape = { x: c.x, o: c.o, kh: c.k, kw: c.k, stride: c.stride, pad: c.pad };
        const outShape = conv2dOutShape(shape);
        const xs = values(seed++, B * C * H * W, dtype);
        const ws = values(seed++, c.o * C * c.k * c.k, dtype, 1 / Math.sqrt(C * c.k * c.k));
        const bs = c.bias ? values(seed++, c.o, dtype) : null;
        const rs = c.residual ? values(seed++, outShape.reduce((a, b) => a * b, 1), dtype) : null;
        const { q, values: qv, scales } = await quantizeChecked(gpu, ws, [c.o, C, c.k, c.k], dtype);
        const x = uploadAs(gpu, xs, 'f32', c.x, dtype);
        const b = bs && uploadAs(gpu, bs, 'f32', [c.o], dtype);
        const r = rs && uploadAs(gpu, rs, 'f32', outShape, dtype);
        const poisoned = poisonNextOutput(gpu, outShape, dtype);
        const out = conv2d(x, q, b, { stride: c.stride, padding: c.pad, ...(r ? { residual: r } : {}) });
        expect(out.buffer).toBe(poisoned);
        const want = conv2dRef(xs, dequantizeRef(qv, scales, c.o, C * c.k * c.k), bs, rs, shape);
        const label = `conv2d ${dtype} ${c.x}→${c.o} k${c.k}${c.limit ? ' chunks' : ''}`;
        expect(record(label, relL2(await out.read(), want)), label).toBeLessThan(TOL[dtype]); // see TOL
        for (const t of [x, b, r, out, q]) t?.release();
      }
    });
  }
});
