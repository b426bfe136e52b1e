// fmaf (src/float32.ts) vs exact rational arithmetic in BigInt, rounded once to float32.

import { describe, expect, it } from 'vitest';
import { fmaf } from '../src/float32.js';
import { rng } from './helpers/gpu.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** A float32 as integer significand m and exponent e: x = m·2^e exactly. */
function parts(x: number): { m: bigint; e: number } {
  f32[0] = x;
  const w = u32[0]!;
  const biased = (w >>> 23) & 0xff;
  const frac = w & 0x7fffff;
  const m = BigInt(biased === 0 ? frac : frac | 0x800000);
  return { m: w >>> 31 ? -m : m, e: (biased === 0 ? 1 : biased) - 127 - 23 };
}

/** a·b + c computed exactly, rounded to nearest-even float32 (normal range only). */
function exactFma(a: number, b: number, c: number): number {
  const pa = parts(a);
  const pb = parts(b);
  const pc = parts(c);
  const ep = pa.e + pb.e;
  const e = Math.min(ep, pc.e);
  const n = pa.m * pb.m * 2n ** BigInt(ep - e) + pc.m * 2n ** BigInt(pc.e - e);
  const sign = n < 0n ? -1 : 1;
  let mag = n < 0n ? -n : n;
  if (mag === 0n) return 0;
  const shift = mag.toString(2).length - 24;
  let exp = e;
  if (shift > 0) {
    const q = mag >> BigInt(shift);
    const rem = mag - (q << BigInt(shift));
    const half = 1n << BigInt(shift - 1);
    mag = rem > half || (rem === half && (q & 1n) === 1n) ? q + 1n : q;
    exp += shift;
  }
  return sign * Number(mag) * 2 ** exp;
}

describe('fmaf', () => {
  it('rounds once where a double intermediate would round twice (exact ties)', () => {
    // (1 + 2⁻¹²)² = 1 + 2⁻¹¹ + 2⁻²⁴ is halfway between two floats; a tiny c decides.
    const a = 1 + 2 ** -12;
    expect(fmaf(a, a, 2 ** -80)).toBe(1 + 2 ** -11 + 2 ** -23);
    expect(Math.fround(a * a + 2 ** -80)).toBe(1 + 2 ** -11); // what fround alone gives
    expect(fmaf(a, a, -(2 ** -80))).toBe(1 + 2 ** -11);

    const random = rng(20240611);
    let naiveWrong = 0;
    for (let i = 0; i < 2000; i++) {
      // odd 12- and 13-bit significands: a 25-bit odd product is exactly a float32 midpoint
      const x = (2 ** 11 + 2 * Math.floor(random() * 2 ** 10) + 1) * 2 ** (Math.floor(random() * 20) - 20);
      const y = (2 ** 12 + 2 * Math.floor(random() * 2 ** 11) + 1) * 2 ** (Math.floor(random() * 20) - 20);
      const tiny = Math.fround((random() - 0.5) * x * y * 2 ** -70); // below the double's precision
      expect(fmaf(x, y, tiny)).toBe(exactFma(x, y, tiny));
      if (Math.fround(x * y + tiny) !== exactFma(x, y, tiny)) naiveWrong++;
    }
    expect(naiveWrong).toBeGreaterThan(100); // the cases really are the hard ones
  });

  it('matches exact arithmetic on random operands, with and without cancellation', () => {
    const random = rng(7);
    const value = (): number => Math.fround((random() - 0.5) * 2 ** (Math.floor(random() * 40) - 20));
    for (let i = 0; i < 5000; i++) {
      const a = value();
      const b = value();
      const c = i % 2 ? value() : Math.fround(-a * b * (1 + (random() - 0.5) * 2 ** -20));
      expect(fmaf(a, b, c)).toBe(exactFma(a, b, c));
    }
  });
});
