// diagonalGaussian: the VAE posterior from the encoder's moments, against float64.

import { describe, expect, it } from 'vitest';
import { diagonalGaussian } from '../../src/ops/posterior.js';
import { uploadAs } from '../../src/ops/cast.js';
import { Tensor } from '../../src/tensor.js';
import { dtypes, randn, relL2, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { poisonPooled } from '../helpers/ops.js';
import { posteriorRef } from '../reference/posterior.js';

describe('diagonalGaussian', () => {
  it('splits mean and logvar per image, clamps logvar to [−30, 20], std = exp(logvar / 2)', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      const [B, C, H, W] = [3, 3, 5, 7];
      // Logvars spread over ±40 so both clamp bounds are hit; f16 keeps them below its max.
      const values = randn(rng(5), B * 2 * C * H * W, 15);
      const v = dtype === 'f16' ? roundToF16(values) : values;
      const moments = uploadAs(gpu, values, 'f32', [B, 2 * C, H, W], dtype);
      // Three NaN buffers of the outputs' size class, idle in the pool together.
      const poisoned = new Set(poisonPooled(gpu, [B, C, H, W], dtype, 3));
      const { mean, logvar, std } = diagonalGaussian(moments);
      expect(new Set([mean.buffer, logvar.buffer, std.buffer])).toEqual(poisoned);
      const { mean: m, logvar: lv, std: sd, clamped } = posteriorRef(v, B);
      expect(clamped).toBeGreaterThan(10);
      for (const t of [mean, logvar, std]) expect(t.shape).toEqual([B, C, H, W]);
      expect(await mean.read()).toEqual(Float32Array.from(m)); // a copy: exact
      // f32: clamp exact, exp within a few ulps (1e-6); f16: outputs stored in f16 (2^-11).
      const tol = dtype === 'f32' ? 1e-6 : 1e-3;
      expect(relL2(await logvar.read(), lv)).toBeLessThan(tol);
      expect(relL2(await std.read(), sd)).toBeLessThan(tol);
      for (const t of [moments, mean, logvar, std]) t.release();
    }
  });

  it('rejects moments without an even channel count', async () => {
    const gpu = await testGpu();
    const odd = Tensor.empty(gpu, [1, 7, 2, 2], 'f32');
    expect(() => diagonalGaussian(odd)).toThrow(/diagonalGaussian: moments \(1, 7, 2, 2\) must be \(B, 2C, \.\.\.spatial\)/);
    odd.release();
  });
});
