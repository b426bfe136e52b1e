// The scheduler's steps (kernels/euler.wgsl) against float64, with the step's numbers read
// from the coefficients tensor; f32 only (the latents are f32 whatever the UNet's dtype).

import { describe, expect, it } from 'vitest';
import { eulerCoefficients, eulerStep, scaleModelInput } from '../../src/ops/euler.js';
import { formatShape, Tensor } from '../../src/tensor.js';
import { randn, rng, testGpu } from '../helpers/gpu.js';
import { poisonNextOutput } from '../helpers/ops.js';
import { eulerStepRef, scaleModelInputRef } from '../reference/euler.js';

// 1: one invocation; 1003: a partial last workgroup; (2, 4, 9, 10): odd latent sides.
const SHAPES = [[1], [1003], [2, 4, 9, 10]];

describe('euler', () => {
  it('scale_model_input: x · c[0], one f32 multiplication (exact against float64 rounded once)', async () => {
    const gpu = await testGpu();
    for (const shape of SHAPES) {
      const n = shape.reduce((a, b) => a * b, 1);
      const xs = randn(rng(n), n, 14.6);
      const c = eulerCoefficients({ inputScale: 1 / Math.sqrt(14.6 ** 2 + 1), dt: 0, sigmaUp: 0 });
      const [x, coefficients] = [Tensor.upload(gpu, xs, 'f32', shape, 'f32'), Tensor.upload(gpu, c, 'f32', [3], 'f32')];
      const poisoned = poisonNextOutput(gpu, shape, 'f32');
      const out = scaleModelInput(x, coefficients);
      expect(out.buffer).toBe(poisoned);
      expect(Array.from(await out.read()), formatShape(shape)).toEqual(Array.from(scaleModelInputRef(xs, c)));
      [x, coefficients, out].forEach((t) => t.release());
    }
  });

  for (const ancestral of [true, false]) {
    it(`step${ancestral ? ' with noise (ancestral)' : ' without noise (plain Euler)'}: (x + ε·dt) + noise·σ_up within its f32 roundings`, async () => {
      const gpu = await testGpu();
      for (const shape of SHAPES) {
        const n = shape.reduce((a, b) => a * b, 1);
        const random = rng(n + 7);
        const [xs, es, ns] = [randn(random, n, 14.6), randn(random, n), randn(random, n)];
        // SDXL-Turbo's first of 4 steps: σ 14.6 → 4.1, dt −11.1, σ_up 3.9.
        const c = eulerCoefficients({ inputScale: 0, dt: -11.1, sigmaUp: 3.9 });
        const up = (data: Float32Array, s: readonly number[]): Tensor => Tensor.upload(gpu, data, 'f32', s, 'f32');
        const [x, eps, noise, coefficients] = [up(xs, shape), up(es, shape), ancestral ? up(ns, shape) : null, up(c, [3])];
        const poisoned = poisonNextOutput(gpu, shape, 'f32');
        const out = eulerStep(x, eps, noise, coefficients!);
        expect(out.buffer).toBe(poisoned);
        const got = await out.read();
        const want = eulerStepRef(xs, es, ancestral ? ns : null, c);
        for (let i = 0; i < n; i++) {
          // Up to three f32 roundings (two products, two sums, any of them fused), each within
          // 2^-24 of the magnitudes summed.
          const scale = Math.abs(xs[i]!) + Math.abs(es[i]! * c[1]!) + (ancestral ? Math.abs(ns[i]! * c[2]!) : 0);
          expect(Math.abs(got[i]! - want[i]!), `${formatShape(shape)} [${i}]`).toBeLessThanOrEqual(4 * 2 ** -24 * scale);
        }
        [x, eps, noise, coefficients, out].forEach((t) => t?.release());
      }
    });
  }

  it('refuses f16 latents, mismatched shapes and a coefficients tensor of another size', async () => {
    const gpu = await testGpu();
    const x = Tensor.empty(gpu, [1, 4, 3, 3], 'f32');
    const c = Tensor.empty(gpu, [3], 'f32');
    const wrong = Tensor.empty(gpu, [1, 4, 3, 2], 'f32');
    const four = Tensor.empty(gpu, [4], 'f32');
    expect(() => eulerStep(x, wrong, null, c)).toThrow(/eulerStep: eps must be f32 of x's shape \(1, 4, 3, 3\), got f32 \(1, 4, 3, 2\)/);
    expect(() => scaleModelInput(x, four)).toThrow(/scaleModelInput: coefficients must be \(3\) f32/);
    // The check comes before any f16 use, so it holds on devices without shader-f16 too.
    const half = Tensor.empty(gpu, [1, 4, 3, 3], 'f16');
    expect(() => scaleModelInput(half, c)).toThrow(/scaleModelInput: x must be f32 of x's shape \(1, 4, 3, 3\), got f16/);
    [x, c, wrong, four, half].forEach((t) => t.release());
  });
});
