// Spatial windows for the VAE's tiled decode: cropSpatial copies a window exactly; blendInto
// adds a tile with linear edge ramps into a destination window. Both against plain CPU loops.

import { describe, expect, it } from 'vitest';
import { tileSpans } from '../../src/models/vae.js';
import { blendInto, cropSpatial, type Ramps } from '../../src/ops/tiles.js';
import { uploadAs } from '../../src/ops/cast.js';
import { numel, Tensor } from '../../src/tensor.js';
import { blendRef, cropRef } from '../reference/tiles.js';
import { dtypes, randn, relL2, rng, testGpu } from '../helpers/gpu.js';
import { input, poisonNextOutput } from '../helpers/ops.js';

describe('cropSpatial', () => {
  it('copies the window bit for bit, both dtypes', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      const shape = [3, 5, 11, 13];
      const x = input(gpu, randn(rng(3), numel(shape)), shape, dtype);
      const win = { image: 1, images: 2, y: 3, x: 4, h: 7, w: 6 };
      const poisoned = poisonNextOutput(gpu, [2, 5, 7, 6], dtype);
      const out = cropSpatial(x.t, win);
      expect(out.shape).toEqual([2, 5, 7, 6]);
      expect(out.buffer).toBe(poisoned);
      expect(await out.read()).toEqual(cropRef(x.v, shape, win)); // a copy: exact
      x.t.release();
      out.release();
    }
  });

  it('rejects windows outside the tensor', async () => {
    const gpu = await testGpu();
    const x = Tensor.empty(gpu, [1, 2, 4, 4], 'f32');
    expect(() => cropSpatial(x, { image: 0, images: 1, y: 2, x: 0, h: 3, w: 4 })).toThrow(/cropSpatial: window .* lies outside src \(1, 2, 4, 4\)/);
    expect(() => cropSpatial(x, { image: 1, images: 1, y: 0, x: 0, h: 1, w: 1 })).toThrow(/lies outside src/);
    x.release();
  });
});

describe('blendInto', () => {
  it('adds the ramp-weighted tile into the destination window, both dtypes', async () => {
    const gpu = await testGpu();
    for (const dtype of await dtypes()) {
      const dstShape = [3, 2, 19, 23];
      const tileShape = [2, 2, 13, 17];
      const dst = input(gpu, randn(rng(11), numel(dstShape)), dstShape, dtype);
      const tile = input(gpu, randn(rng(12), numel(tileShape)), tileShape, dtype);
      const ramps: Ramps = { top: 5, bottom: 3, left: 0, right: 7 };
      const at = { image: 1, y: 4, x: 6 };
      blendInto(dst.t, tile.t, at, ramps);
      const expected = blendRef(dst.v, dstShape, tile.v, tileShape, at, ramps);
      // f32: one product and one sum per element (≈1e-7); f16: the sum is stored in f16 (2^-11).
      const tol = dtype === 'f32' ? 1e-6 : 1e-3;
      expect(relL2(await dst.t.read(), expected)).toBeLessThan(tol);
      dst.t.release();
      tile.t.release();
    }
  });

  it('tiles from tileSpans with their overlaps as ramps sum to exactly one everywhere', async () => {
    // A tile of ones per span pair, blended as the VAE's tiled decode does: any gap, double
    // count or misplaced ramp shows up as a value ≠ 1 (f32, sums of a few fractions: 1e-6).
    const gpu = await testGpu();
    for (const [height, width, tile, overlap] of [[37, 29, 12, 3], [24, 40, 9, 2], [16, 16, 16, 4], [21, 50, 4, 1]] as const) {
      const rows = tileSpans(height, tile, overlap);
      const cols = tileSpans(width, tile, overlap);
      const out = Tensor.empty(gpu, [1, 1, height, width], 'f32');
      out.fill(0);
      const before = (s: typeof rows, k: number) => (k > 0 && k < s.length ? s[k - 1]!.start + s[k - 1]!.size - s[k]!.start : 0);
      for (const [i, r] of rows.entries()) {
        for (const [j, c] of cols.entries()) {
          const ones = uploadAs(gpu, new Float32Array(r.size * c.size).fill(1), 'f32', [1, 1, r.size, c.size], 'f32');
          blendInto(out, ones, { image: 0, y: r.start, x: c.start }, { top: before(rows, i), bottom: before(rows, i + 1), left: before(cols, j), right: before(cols, j + 1) });
          ones.release();
        }
      }
      const values = await out.read();
      expect(Math.max(...values.map((v) => Math.abs(v - 1))), `${height}×${width} tile ${tile} overlap ${overlap}`).toBeLessThan(1e-6);
      out.release();
    }
  });
});

describe('tileSpans', () => {
  it('covers the axis with equal spans ≤ tile, overlaps ≥ the minimum, ramps that never meet', () => {
    const failures: string[] = [];
    for (let length = 1; length <= 200; length++) {
      for (let tile = 1; tile <= 70; tile += 3) {
        for (let overlap = 0; overlap <= tile / 4; overlap++) {
          const spans = tileSpans(length, tile, overlap);
          const last = spans[spans.length - 1]!;
          const overlaps = spans.slice(1).map((s, k) => spans[k]!.start + spans[k]!.size - s.start);
          const ok =
            spans[0]!.start === 0 &&
            last.start + last.size === length &&
            spans.every((s) => s.size === spans[0]!.size && s.size <= tile) &&
            overlaps.every((o) => o >= overlap) &&
            // the fewest tiles: one fewer could not cover the axis with the minimum overlap
            (spans.length === 1 || (spans.length - 2) * (tile - overlap) + tile < length) &&
            overlaps.every((o, k) => k === 0 || overlaps[k - 1]! + o <= spans[k]!.size);
          if (!ok) failures.push(`length ${length}, tile ${tile}, overlap ${overlap}: ${JSON.stringify(spans)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('rejects overlaps above a quarter tile', () => {
    expect(() => tileSpans(40, 8, 3)).toThrow(/0 ≤ overlap ≤ tile \/ 4/);
  });
});
