import { describe, expect, it } from 'vitest';
import { ATTENTION_VARIANTS, attention, type AttentionVariant, columns } from '../../src/ops/attention.js';
import { uploadAs } from '../../src/ops/cast.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { attentionRef, type AttentionRefCase } from '../reference/attention.js';
import { dtypes, hasSubgroups, randn, relL2, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { poisonNextOutput } from '../helpers/ops.js';
import { observedCalls, runEveryCandidate } from '../helpers/tunable-calls.js';

interface Case extends AttentionRefCase {
  readonly scale?: number;
  /** Rescale q so that the largest |logit| is exactly this (online-softmax stability). */
  readonly peakLogit?: number;
}

/** Largest |scale·q·k| over all heads and query/key pairs. */
function peakLogit(q: Float32Array, k: Float32Array, c: Case, scale: number): number {
  const width = c.heads * c.d;
  let peak = 0;
  for (let b = 0; b < c.batch; b++)
    for (let h = 0; h < c.heads; h++)
      for (let i = 0; i < c.lq; i++)
        for (let j = 0; j < c.lk; j++) {
          let s = 0;
          for (let x = 0; x < c.d; x++) s += q[(b * c.lq + i) * width + h * c.d + x]! * k[(b * c.lk + j) * width + h * c.d + x]!;
          peak = Math.max(peak, Math.abs(s * scale));
        }
  return peak;
}

// Shapes cover the sizes the models meet (77 text tokens, single tokens, cross-attention with
// Lq ≠ Lk) at awkward lengths that are not tile multiples (64 / split queries, ≤ 16 keys per
// tile), both pipelines (d = 64 compiled in; any other d), heads split over 1, 2, 3 (idle
// invocations) and 16 invocations, padded slices (8, 13, 24, 40, 80 columns; 13 is not a multiple
// of 4), causal and not, custom scales and large logits.
const cases: Case[] = [
  { batch: 2, lq: 77, lk: 77, heads: 3, d: 64, causal: true },
  { batch: 1, lq: 129, lk: 100, heads: 2, d: 64 },
  { batch: 2, lq: 1, lk: 129, heads: 5, d: 64, scale: 0.07 },
  { batch: 1, lq: 100, lk: 77, heads: 4, d: 64, peakLogit: 30 },
  { batch: 1, lq: 7, lk: 7, heads: 1, d: 64, causal: true, peakLogit: 200 }, // e^200 overflows f32: needs the running max
  { batch: 2, lq: 100, lk: 7, heads: 1, d: 8 },
  { batch: 1, lq: 129, lk: 129, heads: 2, d: 8, causal: true, peakLogit: 30 },
  { batch: 1, lq: 77, lk: 1, heads: 5, d: 13 },
  { batch: 1, lq: 7, lk: 100, heads: 3, d: 24, scale: 1.3 },
  { batch: 2, lq: 77, lk: 77, heads: 1, d: 24, causal: true },
  { batch: 1, lq: 129, lk: 77, heads: 2, d: 40, peakLogit: 30 },
  { batch: 1, lq: 100, lk: 100, heads: 4, d: 80, causal: true },
  { batch: 1, lq: 1, lk: 7, heads: 2, d: 80 },
  { batch: 1, lq: 7, lk: 77, heads: 1, d: 512 },
  { batch: 1, lq: 100, lk: 100, heads: 1, d: 512, causal: true, peakLogit: 30 },
  { batch: 1, lq: 129, lk: 7, heads: 2, d: 24, causal: true }, // causal with Lq > Lk: later queries see every key
  { batch: 2, lq: 70, lk: 5, heads: 2, d: 64, causal: true, peakLogit: 60 },
];

/** Every variant the test GPU runs: `sg` and `direct` need `subgroups` (its absence is
 *  reported), `direct` a head dim of 64 as well. */
async function variants(d: number): Promise<readonly AttentionVariant[]> {
  const subgroups = await hasSubgroups('the sg and direct attention variants are not tested');
  return ATTENTION_VARIANTS.filter((v) => (v !== 'sg' && v !== 'direct') || (subgroups && (v === 'sg' || d === 64)));
}

/** Runs the op into a pooled buffer that was filled with NaN, so anything it fails to write shows. */
function runPoisoned(q: Tensor, k: Tensor, v: Tensor, c: Case, variant: AttentionVariant): Tensor {
  const buffer = poisonNextOutput(q.gpu, q.shape, q.dtype);
  const out = attention(q, k, v, { heads: c.heads, causal: c.causal, scale: c.scale, variant });
  expect(out.buffer).toBe(buffer);
  return out;
}

describe('attention', async () => {
  for (const dtype of await dtypes()) {
    for (const [n, c] of cases.entries()) {
      const name = `${dtype} B=${c.batch} Lq=${c.lq} Lk=${c.lk} heads=${c.heads} d=${c.d}` +
        `${c.causal ? ' causal' : ''}${c.scale ? ` scale=${c.scale}` : ''}${c.peakLogit ? ` logits≈${c.peakLogit}` : ''}`;
      it(name, async () => {
        const gpu = await testGpu();
        const random = rng(1000 * n + (dtype === 'f16' ? 1 : 0));
        const width = c.heads * c.d;
        const scale = c.scale ?? 1 / Math.sqrt(c.d);
        let q = randn(random, c.batch * c.lq * width);
        let k = randn(random, c.batch * c.lk * width);
        let v = randn(random, c.batch * c.lk * width);
        if (c.peakLogit) {
          const factor = c.peakLogit / peakLogit(q, k, c, scale);
          q = q.map((x) => x * factor);
        }
        if (dtype === 'f16') [q, k, v] = [roundToF16(q), roundToF16(k), roundToF16(v)];
        if (c.peakLogit) expect(peakLogit(q, k, c, scale)).toBeGreaterThan(0.99 * c.peakLogit);

        const tq = uploadAs(gpu, q, 'f32', [c.batch, c.lq, width], dtype);
        const tk = uploadAs(gpu, k, 'f32', [c.batch, c.lk, width], dtype);
        const tv = uploadAs(gpu, v, 'f32', [c.batch, c.lk, width], dtype);
        const expected = attentionRef(q, k, v, c, scale);
        for (const variant of await variants(c.d)) {
          const out = runPoisoned(tq, tk, tv, c, variant);
          expect(out.shape).toEqual([c.batch, c.lq, width]);
          expect(out.dtype).toBe(dtype);
          const actual = await out.read();
          // f32: float32 dot products, exp2 and sums over ≤ 512 terms (measured ≤ 4e-7; sg,
          // which adds the same terms in another order, per lane then across lanes, ≤ 7.3e-7;
          // direct, whose softmax terms reach 2^8 before a rescale, ≤ 3.4e-7);
          // f16: inputs are exact (rounded before the reference); the output's f16 rounding
          // (≤ 2^-11 per element) dominates (measured ≈ 2e-4, sg and direct as well).
          expect(relL2(actual, expected), variant).toBeLessThan(dtype === 'f32' ? 1e-5 : 1e-3);
          out.release();
        }
        for (const t of [tq, tk, tv]) t.release();
      });
    }
  }

  // q, k, v read in place from wider rows: q|k|v of one projection (self-attention), k|v of one
  // and q alone (cross-attention), and ranges at odd offsets amid other columns (d = 13).
  for (const dtype of await dtypes()) {
    const packings: Array<{ c: Case; q: [number, number]; k: [number, number]; v: [number, number]; same: boolean }> = [
      { c: { batch: 2, lq: 77, lk: 77, heads: 3, d: 64, causal: true }, q: [0, 576], k: [192, 576], v: [384, 576], same: true },
      { c: { batch: 2, lq: 100, lk: 7, heads: 1, d: 13 }, q: [5, 23], k: [0, 26], v: [13, 26], same: false },
      { c: { batch: 1, lq: 33, lk: 40, heads: 2, d: 40 }, q: [3, 90], k: [7, 171], v: [91, 171], same: false },
    ];
    for (const { c, q: [qAt, qRow], k: [kAt, kvRow], v: [vAt], same } of packings) {
      it(`${dtype}: q, k, v as columns of wider rows (B=${c.batch} Lq=${c.lq} Lk=${c.lk} heads=${c.heads} d=${c.d}${same ? ', one q|k|v tensor' : ''})`, async () => {
        const gpu = await testGpu();
        const random = rng(77 + c.d + (dtype === 'f16' ? 1 : 0));
        const width = c.heads * c.d;
        const round = (x: Float32Array) => (dtype === 'f16' ? roundToF16(x) : x);
        const qRows = round(randn(random, c.batch * c.lq * qRow));
        const kvRows = same ? qRows : round(randn(random, c.batch * c.lk * kvRow));
        const pick = (rows: Float32Array, rowLen: number, at: number) =>
          Float32Array.from({ length: (rows.length / rowLen) * width }, (_, i) => rows[Math.floor(i / width) * rowLen + at + (i % width)]!);
        const tq = uploadAs(gpu, qRows, 'f32', [c.batch, c.lq, qRow], dtype);
        const tkv = same ? tq : uploadAs(gpu, kvRows, 'f32', [c.batch, c.lk, kvRow], dtype);
        const expected = attentionRef(pick(qRows, qRow, qAt), pick(kvRows, kvRow, kAt), pick(kvRows, kvRow, vAt), c, 1 / Math.sqrt(c.d));
        for (const variant of await variants(c.d)) {
          const poisoned = poisonNextOutput(gpu, [c.batch, c.lq, width], dtype);
          const out = attention(columns(tq, qAt, width), columns(tkv, kAt, width), columns(tkv, vAt, width), { heads: c.heads, causal: c.causal, variant });
          expect(out.buffer).toBe(poisoned);
          expect(out.shape).toEqual([c.batch, c.lq, width]);
          // As the plain cases (sg too): f32 math (≤ 1e-5); f16 output rounding dominates (≤ 1e-3).
          expect(relL2(await out.read(), expected), variant).toBeLessThan(dtype === 'f32' ? 1e-5 : 1e-3);
          out.release();
        }
        for (const t of new Set([tq, tkv])) t.release();
      });
    }
  }

  it('offers tune the variants that differ at the head dim, the default among them, each runnable on prepared inputs', async () => {
    const gpu = await testGpu();
    // d = 64: tiles hold 16 keys at d32 and d64, so all four differ; d = 512: a d64 tile holds
    // 3 keys (k8 = k16) and a d32 one 3 as well. sg (no tiles) at every head dim.
    // direct at d = 64 only, and the heuristic's choice on a CPU adapter.
    const sg = (await variants(512)).filter((v) => v === 'sg');
    for (const [d, expected] of [[64, await variants(64)], [512, ['d32-k16', 'd64-k16', ...sg]]] as const) {
      const q = Tensor.empty(gpu, [1, 9, 2 * d], 'f32');
      const calls = observedCalls(gpu, () => attention(q, q, q, { heads: 2 }).release());
      expect(calls.map((c) => c.candidates), `d=${d}`).toEqual([expected]);
      expect(calls[0]!.heuristic).toBe(gpu.tuning.cpu && (expected as readonly string[]).includes('direct') ? 'direct' : 'd32-k16');
      await runEveryCandidate(gpu, calls[0]!);
      q.release();
    }
  });

  it('refuses a variant the call cannot run, naming the valid ones', async () => {
    const gpu = await testGpu();
    const q = Tensor.empty(gpu, [1, 9, 48], 'f32');
    expect(() => attention(q, q, q, { heads: 2, variant: 'direct' })).toThrow(/attention: variant direct is not valid for q \(1, 9, 48\), k \(1, 9, 48\), v \(1, 9, 48\) on this device \(valid: d32-k16, d32-k8, d64-k16/);
    if (gpu.subgroups) {
      // d = 64, but k and v start 2 columns into their rows: not on a 16-byte word (4 f32).
      const kv = Tensor.empty(gpu, [1, 9, 130], 'f32');
      const wide = Tensor.empty(gpu, [1, 9, 128], 'f32');
      expect(() => attention(wide, columns(kv, 2, 128), columns(kv, 2, 128), { heads: 2, variant: 'direct' })).toThrow(/variant direct is not valid for q \(1, 9, 128\), k \(1, 9, 130\)\[…, 2:130\]/);
      expect(attention(wide, columns(kv, 2, 128), columns(kv, 2, 128), { heads: 2 }).shape).toEqual([1, 9, 128]);
      for (const t of [kv, wide]) t.release();
    }
    q.release();
  });

  it('rejects column ranges outside their tensor', async () => {
    const gpu = await testGpu();
    const t = Tensor.empty(gpu, [1, 4, 24], 'f32');
    expect(() => columns(t, 16, 16)).toThrow(/attention: columns \[16, 32\) of a \(1, 4, 24\) tensor/);
    expect(() => columns(t.reshape([4, 24]), 0, 8)).toThrow(/attention: columns/);
    t.release();
  });

  it('rejects mismatched shapes, dtypes and head counts', async () => {
    const gpu = await testGpu();
    const t = (shape: number[], dtype: DType = 'f32') => Tensor.empty(gpu, shape, dtype);
    const q = t([1, 7, 24]);
    const k = t([1, 5, 24]);
    expect(() => attention(q, k, t([1, 6, 24]), { heads: 3 })).toThrow(/k and v must be/);
    expect(() => attention(q, t([2, 5, 24]), t([2, 5, 24]), { heads: 3 })).toThrow(/k and v must be/);
    expect(() => attention(q, t([1, 5, 16]), t([1, 5, 16]), { heads: 2 })).toThrow(/k and v must be/);
    expect(() => attention(q, k, k, { heads: 5 })).toThrow(/heads do not divide/);
    expect(() => attention(q, t([1, 0, 24]), t([1, 0, 24]), { heads: 3 })).toThrow(/no keys/);
    expect(() => attention(q.reshape([7, 24]), k, k, { heads: 3 })).toThrow(/must be \(B, L, heads·d\)/);
    if (gpu.f16) expect(() => attention(q, t([1, 5, 24], 'f16'), k, { heads: 3 })).toThrow(/dtypes differ/);
    expect(() => attention(t([1, 2, 2048]), t([1, 2, 2048]), t([1, 2, 2048]), { heads: 1 })).toThrow(/head dim 2048 exceeds/);
    expect(attention(t([1, 0, 24]), k, k, { heads: 3 }).shape).toEqual([1, 0, 24]);
  });

  it('refuses a q larger than one storage binding', async () => {
    const gpu = await testGpu();
    const limit = gpu.limits.maxStorageBufferBindingSize;
    const q = Tensor.empty(gpu, [1, Math.floor(limit / 256) + 1, 64], 'f32'); // one token past the limit
    const kv = Tensor.empty(gpu, [1, 3, 64], 'f32');
    expect(() => attention(q, kv, kv, { heads: 1 })).toThrow(/attention q: f32 tensor \(1, \d+, 64\) is \d+ bytes, over this device's \d+-byte storage binding limit/);
    q.release();
    kv.release();
  });
});
