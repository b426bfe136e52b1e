import { describe, expect, it } from 'vitest';
import { f16ArrayToF32, f32ArrayToF16, f32ToF16Bits } from '../../src/f16.js';
import { Tensor } from '../../src/tensor.js';
import { randn, rng, testGpu } from '../helpers/gpu.js';

describe('f16 conversion on the CPU', () => {
  it('rounds to nearest even, including subnormals, overflow and signed zero', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds up to inf
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie → even (0)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // tie → even (2)
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(Number.isNaN(f16ArrayToF32(new Uint16Array([0x7e00]))[0])).toBe(true);
    // every finite half survives f16 → f32 → f16
    const all = new Uint16Array(65536).map((_, i) => i).filter((h) => (h & 0x7c00) !== 0x7c00);
    expect(f32ArrayToF16(f16ArrayToF32(all))).toEqual(all);
  });
});

describe('cast kernel', () => {
  // Conversions are exact (f16 → f32 widens; f32 → f16 rounds the same way as the CPU), so
  // the tolerance is zero; odd lengths exercise the half-word tail.
  for (const n of [1, 7, 1000, 4097]) {
    it(`f32 → f16 → f32 and bf16 → f32/f16 for ${n} elements`, async () => {
      const gpu = await testGpu();
      const values = randn(rng(n), n, 3);
      const viaHalf = Tensor.upload(gpu, values, 'f32', [n], 'f16');
      const back = viaHalf.to('f32');
      expect(await back.read()).toEqual(f16ArrayToF32(f32ArrayToF16(values)));
      const halfBits = f32ArrayToF16(values);
      const widened = Tensor.upload(gpu, halfBits, 'f16', [n], 'f32');
      expect(await widened.read()).toEqual(f16ArrayToF32(halfBits));

      // bf16 = the upper 16 bits of f32
      const bf16 = new Uint16Array(new Uint32Array(values.buffer).map((w) => w >>> 16));
      const bfExpected = new Float32Array(new Uint32Array(Array.from(bf16, (h) => h << 16)).buffer);
      const bf32 = Tensor.upload(gpu, bf16, 'bf16', [n], 'f32');
      expect(await bf32.read()).toEqual(bfExpected);
      const bfHalf = Tensor.upload(gpu, bf16, 'bf16', [n], 'f16');
      expect(await bfHalf.read()).toEqual(f16ArrayToF32(f32ArrayToF16(bfExpected)));
      for (const t of [viaHalf, back, widened, bf32, bfHalf]) t.release();
    });
  }
});
