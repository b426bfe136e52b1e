import { describe, expect, it } from 'vitest';
import { axpby } from '../../src/ops/binary.js';
import { gelu, quickGelu, silu } from '../../src/ops/elementwise.js';
import { uploadAs } from '../../src/ops/cast.js';
import { Tensor, type DType } from '../../src/tensor.js';
import * as REF from '../reference/elementwise.js';
import { dtypes, randn, rng, relL2, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, input, poisonNextOutput } from '../helpers/ops.js';

// f32: a few roundings of f32 math (exp, one division) stay near 1e-7, far inside 2e-6.
// f16: storing the output rounds by up to 2^-11 relative; relL2 of that is ≈3e-4 < 1e-3.
const TOL: Record<DType, number> = { f32: 2e-6, f16: 1e-3 };

describe('float64 reference erfc', () => {
  it('matches tabulated values', () => {
    const table: Array<[number, number]> = [
      [0.5, 0.4795001221869535], // erfc(0.5)
      [1, 0.15729920705028513],
      [2.5, 4.069520174449590e-4],
      [4, 1.541725790028002e-8],
      [-1, 1.8427007929497148],
    ];
    for (const [z, want] of table) expect(Math.abs(REF.erfc(z) - want) / want).toBeLessThan(1e-13);
  });
});

describe('activations', () => {
  const ops = [
    ['silu', silu, REF.silu],
    ['gelu', (x: Tensor) => gelu(x, 'none'), REF.gelu],
    ['gelu tanh', (x: Tensor) => gelu(x, 'tanh'), REF.geluTanh],
    ['quickGelu', quickGelu, REF.quickGelu],
    ['axpby(α, x)', (x: Tensor) => axpby(-1.75, x), (x: number) => -1.75 * x],
  ] as const;
  // 1 and 1003: scalar path; 4100: vec4 path.
  for (const [name, op, ref] of ops) {
    it(`${name} matches float64 on odd and vec4 sizes, both dtypes`, async () => {
      const gpu = await testGpu();
      for (const dtype of await dtypes()) {
        for (const n of [1, 1003, 4100]) {
          const { t, v } = input(gpu, randn(rng(n), n, 3), [n], dtype);
          const poisoned = poisonNextOutput(gpu, [n], dtype);
          const out = op(t);
          expect(out.buffer).toBe(poisoned);
          const err = relL2(await out.read(), Array.from(v, ref));
          expect(err, `${name} ${dtype} n=${n}`).toBeLessThan(TOL[dtype]);
          t.release();
          out.release();
        }
      }
    });
  }

  it('keeps relative accuracy over the whole line, tails included (f32)', async () => {
    const gpu = await testGpu();
    const xs = Float32Array.from([...Array.from({ length: 2401 }, (_, i) => -12 + i * 0.01), -100, -85, -40, 40, 85, 100]);
    const x = uploadAs(gpu, xs, 'f32', [xs.length], 'f32');
    // Each tail is x·e^(−a) with a = |x| (silu), 1.702|x|, x²/2 (gelu), 2|u| (gelu tanh).
    const u = (v: number): number => Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3);
    const cases = [
      ['silu', silu, REF.silu, (v: number) => Math.abs(v)],
      ['quickGelu', quickGelu, REF.quickGelu, (v: number) => 1.702 * Math.abs(v)],
      ['gelu', (t: Tensor) => gelu(t, 'none'), REF.gelu, (v: number) => (v * v) / 2],
      ['gelu tanh', (t: Tensor) => gelu(t, 'tanh'), REF.geluTanh, (v: number) => 2 * Math.abs(u(v))],
    ] as const;
    for (const [name, op, ref, exponent] of cases) {
      const out = op(x);
      const got = await out.read();
      xs.forEach((xi, i) => {
        const want = ref(xi);
        // a is an f32 value: each of the ~5 roundings on its way (scaling x, squaring, adding
        // the erfc fit, exp's own reduction) moves e^(−a) by a·2^-24 relative.
        const bound = 1e-6 + 5 * 2 ** -24 * exponent(xi);
        // Where e^(−a) or the result leave f32's normal range, GPUs may flush them to zero.
        if (Math.min(Math.exp(-exponent(xi)), Math.abs(want)) >= 2 ** -126) expect(Math.abs(got[i]! - want) / Math.abs(want), `${name}(${xi})`).toBeLessThan(bound);
      });
      out.release();
    }
    x.release();
  });
});

describe('windows and grids', () => {
  it('splits over aligned windows when tensors exceed the binding limit', async () => {
    // With 1 KiB bindings: 2121 elements are 9 (f32) or 5 (f16) windows, the last one partial,
    // on the scalar path; 2100 on the vec4 path.
    const gpu = await gpuWithBindingLimit(1024);
    for (const dtype of await dtypes()) {
      const random = rng(2100);
      const odd = input(gpu, randn(random, 2121), [2121], dtype);
      const even = input(gpu, randn(random, 2100), [3, 7, 100], dtype);
      const cases: Array<[string, Tensor, () => Tensor, ArrayLike<number>]> = [
        ['silu odd', odd.t, () => silu(odd.t), Array.from(odd.v, REF.silu)],
        ['gelu vec4', even.t, () => gelu(even.t), Array.from(even.v, REF.gelu)],
      ];
      for (const [name, x, op, want] of cases) {
        const poisoned = poisonNextOutput(gpu, [want.length], dtype);
        const out = op();
        expect(out.buffer).toBe(poisoned);
        expect(relL2(await out.read(), want), `${name} ${dtype}`).toBeLessThan(TOL[dtype]);
        out.release();
        x.release();
      }
    }
  });

  it('covers grids folded past 65535 workgroups', async () => {
    const gpu = await testGpu();
    // 256·65535 + 1001 elements (odd: one per invocation) need a second row of workgroups.
    const n = 256 * 65535 + 1001;
    const values = Float32Array.from({ length: n }, (_, i) => (i % 2003) - 1001);
    const x = uploadAs(gpu, values, 'f32', [n], 'f32');
    const poisoned = poisonNextOutput(gpu, [n], 'f32');
    const out = axpby(0.5, x); // halving small integers is exact
    expect(out.buffer).toBe(poisoned);
    const got = await out.read();
    let wrong = 0;
    for (let i = 0; i < n; i++) if (got[i] !== 0.5 * values[i]!) wrong++;
    expect(wrong).toBe(0);
    x.release();
    out.release();
  });

});
