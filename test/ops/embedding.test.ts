import { describe, expect, it } from 'vitest';
import { embedding, timestepEmbedding } from '../../src/ops/elementwise.js';
import { torchExpf } from '../../src/ops/embedding.js';
import { numel, Tensor, type DType } from '../../src/tensor.js';
import { FIXTURES, readReference, ref, TINY_REF } from '../helpers/fixtures.js';
import { dtypes, randint, randn, rng, relL2, roundToF16, testGpu } from '../helpers/gpu.js';
import { poisonNextOutput, withBindingLimit } from '../helpers/ops.js';

type Gpu = Awaited<ReturnType<typeof testGpu>>;

function table(gpu: Gpu, v: number, c: number, dtype: DType, seed: number): { t: Tensor; values: Float32Array } {
  const values = randn(rng(seed), v * c);
  return { t: Tensor.upload(gpu, values, 'f32', [v, c], dtype), values: dtype === 'f16' ? roundToF16(values) : values };
}

/** Rows `ids` of a (V, C) table; ids outside 0..V−1 give zero rows. */
function gatherRef(values: Float32Array, v: number, c: number, ids: ArrayLike<number>): Float32Array {
  const out = new Float32Array(ids.length * c);
  for (let l = 0; l < ids.length; l++) {
    const id = ids[l]!;
    if (id >= 0 && id < v) out.set(values.subarray(id * c, (id + 1) * c), l * c);
  }
  return out;
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
        expect(await out.read(), `${v}×${c} ${dtype}`).toEqual(gatherRef(values, v, c, ids));
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
      const idTensor = Tensor.upload(gpu, ids, 'f32', [2, 4], 'f32');
      const poisoned = poisonNextOutput(gpu, [2, 4, 8], dtype);
      const out = embedding(t, idTensor);
      expect(out.shape).toEqual([2, 4, 8]);
      expect(out.buffer).toBe(poisoned);
      expect(await out.read()).toEqual(gatherRef(values, 41, 8, ids));
      for (const x of [t, idTensor, out]) x.release();
    }
  });

  it('binds a table larger than the binding limit in row windows', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      // 1 KiB bindings: 8 (f32) or 16 (f16) rows of 32 per window, so 300 rows are 38 or 19
      // windows. Rows of 7 need 64- (f32) or 128-row (f16) aligned windows: 128 rows a
      // window, 3 windows.
      for (const [v, c] of [[300, 32], [300, 7]]) {
        const { t, values } = table(gpu, v, c, dtype, v + c);
        const random = rng(c);
        const hostIds = Int32Array.from({ length: 19 }, () => randint(random, 0, v - 1));
        hostIds.set([0, v - 1], 0);
        const gpuIds = Float32Array.from([...hostIds, -5, v]);
        const idTensor = Tensor.upload(gpu, gpuIds, 'f32', [gpuIds.length], 'f32');
        const limit = c === 7 ? 128 * 7 * (dtype === 'f32' ? 4 : 2) : 1024;
        const [fromHost, fromGpu] = await withBindingLimit(gpu, limit, () => {
          poisonNextOutput(gpu, [19, c], dtype);
          const a = embedding(t, hostIds);
          poisonNextOutput(gpu, [gpuIds.length, c], dtype);
          return [a, embedding(t, idTensor)];
        });
        expect(await fromHost.read(), `host ids ${v}×${c} ${dtype}`).toEqual(gatherRef(values, v, c, hostIds));
        expect(await fromGpu.read(), `GPU ids ${v}×${c} ${dtype}`).toEqual(gatherRef(values, v, c, gpuIds));
        for (const x of [t, idTensor, fromHost, fromGpu]) x.release();
      }
    }
  });

  it('rejects host ids outside the table', async () => {
    const gpu = await testGpu();
    const t = Tensor.upload(gpu, new Float32Array(12), 'f32', [3, 4], 'f32');
    expect(() => embedding(t, Int32Array.from([0, 3]))).toThrow(/embedding: id 3 at 1 outside the table's rows 0..2/);
    t.release();
  });
});

/**
 * diffusers' get_timestep_embedding as PyTorch runs it: the argument t·freq is float32 (every
 * step rounded as its float32 CPU ops round, exp included), sin and cos then in float64.
 */
function timestepRef(ts: ArrayLike<number>, dim: number, flip: boolean, shift: number): Float64Array {
  const f = Math.fround;
  const half = Math.floor(dim / 2);
  const out = new Float64Array(ts.length * dim);
  for (let n = 0; n < ts.length; n++) {
    for (let k = 0; k < half; k++) {
      const exponent = f(f(f(-Math.log(10000)) * k) / f(half - shift));
      const arg = f(f(ts[n]!) * torchExpf(exponent));
      const [first, second] = flip ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
      out[n * dim + k] = first;
      out[n * dim + half + k] = second;
    }
  }
  return out;
}

describe('timestepEmbedding', () => {
  it('computes exp as PyTorch float32 CPU does: within 1 ulp, the far neighbour where it is', () => {
    const ulp = (x: number): number => {
      const v = Float32Array.of(x); // positive: the next float up has the next bit pattern
      const bits = new Uint32Array(v.buffer);
      bits[0] = bits[0]! + 1;
      return v[0]! - x;
    };
    const random = rng(5);
    for (let i = 0; i < 2000; i++) {
      const d = Math.fround(-10 * random());
      const exact = Math.exp(d);
      expect(Math.abs(torchExpf(d) - exact)).toBeLessThan(ulp(Math.fround(exact)));
    }
    // SDXL's time_proj frequency k = 2 (of 160): e^d lies 0.3% of an ulp from the midpoint
    // between two floats; the nearest is 0.8912509083747864, PyTorch gives the one above.
    const d = Math.fround(Math.fround(Math.fround(-Math.log(10000)) * 2) / 160);
    expect(Math.fround(Math.exp(d))).toBe(0.8912509083747864);
    expect(torchExpf(d)).toBe(0.8912509679794312);
  });

  it('matches get_timestep_embedding for even and odd dims, both orders, both shifts', async () => {
    const gpu = await testGpu();
    const random = rng(999);
    const ts = Float32Array.from([999, 0, 1, ...Array.from({ length: 4 }, () => Math.round(random() * 999)), 499.5]);
    const t = Tensor.upload(gpu, ts, 'f32', [ts.length], 'f32');
    for (const dtype of await dtypes()) {
      for (const [dim, flip, shift] of [[16, true, 0], [9, false, 1], [320, true, 0], [7, true, 1]] as const) {
        const poisoned = poisonNextOutput(gpu, [ts.length, dim], dtype);
        const out = timestepEmbedding(t, dim, { flipSinToCos: flip, freqShift: shift, dtype });
        expect(out.shape).toEqual([ts.length, dim]);
        expect(out.buffer).toBe(poisoned);
        const err = relL2(await out.read(), timestepRef(ts, dim, flip, shift));
        // f32: own sin/cos polynomials after exact range reduction, ≈1e-7 absolute on values
        // of magnitude ≤ 1. f16: output rounding (≤ 2^-11 relative).
        expect(err, `dim ${dim} flip ${flip} shift ${shift} ${dtype}`).toBeLessThan(dtype === 'f32' ? 1e-6 : 1e-3);
        out.release();
      }
    }
    t.release();
  });

  it('reproduces the UNet time_proj and add_time_proj of the tiny and real-size fixtures', async () => {
    const gpu = await testGpu();
    const sets = [
      { map: await readReference(`${TINY_REF}/unet.safetensors`), prefix: 'case0.', dim: 16, addDim: 8 },
      { map: await readReference(`${FIXTURES}real-size-synthetic/reference.safetensors`), prefix: 'unet.', dim: 320, addDim: 256 },
    ];
    for (const { map, prefix, dim, addDim } of sets) {
      const cases = [
        [ref(map, `${prefix}timestep`).data, dim, ref(map, `${prefix}hook.time_proj`)],
        [ref(map, `${prefix}time_ids`).data, addDim, ref(map, `${prefix}hook.add_time_proj`)],
      ] as const;
      for (const [values, d, want] of cases) {
        const t = Tensor.upload(gpu, values, 'f32', [values.length], 'f32');
        const out = timestepEmbedding(t, d, { flipSinToCos: true, freqShift: 0, dtype: 'f32' });
        expect(out.shape).toEqual([numel(want.shape) / d, d]);
        // The arguments match PyTorch's float32 bit for bit; what remains is the 1-ulp
        // difference between two sin/cos implementations (≈6e-8 on values ≤ 1).
        expect(relL2(await out.read(), want.data), `${prefix} dim ${d}`).toBeLessThan(1e-6);
        t.release();
        out.release();
      }
    }
  });
});
