import { describe, expect, it } from 'vitest';
import { timestepEmbedding, timestepFrequencies, torchExpf } from '../../src/ops/timestep.js';
import { uploadAs } from '../../src/ops/cast.js';
import { numel, Tensor } from '../../src/tensor.js';
import { timestepRef } from '../reference/timestep.js';
import { FIXTURES, readReference, ref, TINY_REF } from '../helpers/fixtures.js';
import { dtypes, relL2, rng, testGpu } from '../helpers/gpu.js';
import { poisonNextOutput } from '../helpers/ops.js';

type Gpu = Awaited<ReturnType<typeof testGpu>>;

/** The frequency table of a `dim` embedding, as the UNet's Timesteps uploads it. */
function frequencies(gpu: Gpu, dim: number, shift: number): Tensor {
  const values = timestepFrequencies(Math.floor(dim / 2), shift);
  return uploadAs(gpu, values, 'f32', [values.length], 'f32');
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
    const t = uploadAs(gpu, ts, 'f32', [ts.length], 'f32');
    for (const dtype of await dtypes()) {
      for (const [dim, flip, shift] of [[16, true, 0], [9, false, 1], [320, true, 0], [7, true, 1]] as const) {
        const freqs = frequencies(gpu, dim, shift);
        const poisoned = poisonNextOutput(gpu, [ts.length, dim], dtype);
        const out = timestepEmbedding(t, freqs, dim, { flipSinToCos: flip, dtype });
        expect(out.shape).toEqual([ts.length, dim]);
        expect(out.buffer).toBe(poisoned);
        const err = relL2(await out.read(), timestepRef(ts, dim, flip, shift));
        // f32: own sin/cos polynomials after exact range reduction, ≈1e-7 absolute on values
        // of magnitude ≤ 1. f16: output rounding (≤ 2^-11 relative).
        expect(err, `dim ${dim} flip ${flip} shift ${shift} ${dtype}`).toBeLessThan(dtype === 'f32' ? 1e-6 : 1e-3);
        freqs.release();
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
        const t = uploadAs(gpu, values, 'f32', [values.length], 'f32');
        const freqs = frequencies(gpu, d, 0);
        const out = timestepEmbedding(t, freqs, d, { flipSinToCos: true, dtype: 'f32' });
        expect(out.shape).toEqual([numel(want.shape) / d, d]);
        // The arguments match PyTorch's float32 bit for bit; what remains is the 1-ulp
        // difference between two sin/cos implementations (≈6e-8 on values ≤ 1).
        expect(relL2(await out.read(), want.data), `${prefix} dim ${d}`).toBeLessThan(1e-6);
        for (const x of [t, freqs, out]) x.release();
      }
    }
  });

  it('checks the frequency table against dim', async () => {
    const gpu = await testGpu();
    const t = uploadAs(gpu, Float32Array.of(1), 'f32', [1], 'f32');
    const freqs = frequencies(gpu, 8, 0);
    expect(() => timestepEmbedding(t, freqs, 9, { flipSinToCos: true })).not.toThrow();
    expect(() => timestepEmbedding(t, freqs, 10, { flipSinToCos: true })).toThrow(/frequencies must be \(5\) f32 for dim 10, got f32 \(4\)/);
    expect(() => timestepFrequencies(4, 4)).toThrow(/shift 4 must be below half = 4/);
    for (const x of [t, freqs]) x.release();
  });
});
