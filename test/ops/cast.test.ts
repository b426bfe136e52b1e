import { describe, expect, it } from 'vitest';
import { f16ArrayToF32, f16BitsToF32, f32ArrayToF16, f32ToF16Bits } from '../../src/f16.js';
import { defineKernel } from '../../src/gpu/pipeline-cache.js';
import { uniforms } from '../../src/gpu/uniforms.js';
import { cast, uploadAs } from '../../src/ops/cast.js';
import { Tensor } from '../../src/tensor.js';
import { roundToF16, toBf16 } from '../reference/cast.js';
import { randn, rng, testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit, poisonPooled } from '../helpers/ops.js';

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
  // the tolerance is zero; odd lengths exercise the half-word tail. A 1 KiB binding limit
  // splits 4097 elements into aligned windows (the last one partial).
  for (const [n, limit] of [[1, 0], [7, 0], [1000, 0], [4097, 0], [4097, 1024]] as const) {
    it(`f32 → f16 → f32 and bf16 → f32/f16 for ${n} elements${limit ? `, ${limit}-byte bindings` : ''}`, async () => {
      const gpu = limit ? await gpuWithBindingLimit(limit) : await testGpu();
      const values = randn(rng(n), n, 3);
      const cases: Array<[string, () => Tensor, Float32Array]> = [];
      const viaHalf = uploadAs(gpu, values, 'f32', [n], 'f16');
      cases.push(['f32 → f16 → f32', () => cast(viaHalf, 'f32'), roundToF16(values)]);
      const halfBits = f32ArrayToF16(values);
      cases.push(['f16 → f32', () => uploadAs(gpu, halfBits, 'f16', [n], 'f32'), f16ArrayToF32(halfBits)]);
      const bf16 = toBf16(values);
      cases.push(['bf16 → f32', () => uploadAs(gpu, bf16.bits, 'bf16', [n], 'f32'), bf16.values]);
      cases.push(['bf16 → f16', () => uploadAs(gpu, bf16.bits, 'bf16', [n], 'f16'), roundToF16(bf16.values)]);
      for (const [name, convert, want] of cases) {
        // Two NaN buffers of the output's size class: an upload's staging buffer may take one.
        const poisoned = poisonPooled(gpu, [n], name.endsWith('f16') ? 'f16' : 'f32', 2);
        const out = convert();
        expect(poisoned, name).toContain(out.buffer);
        expect(await out.read(), name).toEqual(want);
        out.release();
      }
      viaHalf.release();
    });
  }
});

describe('include f16-bits (f32 → f16 by integer arithmetic)', () => {
  // Writes halfBits(v) and packHalves(v) unpacked again, both as f32 integers (exact below 2²⁴).
  const probe = defineKernel({
    name: 'f16-bits probe',
    layout: uniforms(['n', 'u32']),
    source: `//!include f16-bits
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> bits: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> packed: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x >= params.n) { return; }
  bits[id.x] = vec4<f32>(halfBits(x[id.x]));
  let p = packHalves(x[id.x]);
  packed[id.x] = vec4<f32>(vec4<u32>(p.x & 0xffffu, p.x >> 16u, p.y & 0xffffu, p.y >> 16u));
}`,
  });

  it('rounds every kind of input exactly as the CPU does (zero tolerance)', async () => {
    const gpu = await testGpu();
    const special = [0, -0, 1, -2, 65504, 65519.996, 65520, -65520, 65536, 1e9, Infinity, -Infinity, NaN, -NaN,
      2 ** -14, -(2 ** -14), 2 ** -14 * (1 - 2 ** -12), 2 ** -14 * (1 - 2 ** -11), 2 ** -24, 2 ** -25, 3 * 2 ** -25,
      2 ** -26, 2 ** -25 * 1.0001, 1e-45, -1e-40, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, 3.14159];
    // Random values over f16's range and past it, and exact ties between neighbouring halves.
    const random = rng(5);
    const spread = Array.from({ length: 2000 }, () => (random() < 0.5 ? -1 : 1) * 2 ** (random() * 50 - 30) * (1 + random()));
    const ties = Array.from({ length: 2000 }, () => {
      const h = Math.floor(random() * 0x7bff);
      return (f16BitsToF32(h) + f16BitsToF32(h + 1)) / 2;
    });
    const values = Float32Array.from([...special, ...spread, ...ties, 0, 0, 0].slice(0, 4 * Math.floor((special.length + 4003) / 4)));
    const want = Float32Array.from(values, (v) => f32ToF16Bits(v));
    const x = Tensor.upload(gpu, values, 'f32', [values.length], 'f32');
    const [bits, packed] = [Tensor.empty(gpu, [values.length], 'f32'), Tensor.empty(gpu, [values.length], 'f32')];
    for (const t of [bits, packed]) t.fill(-1);
    const n = values.length / 4;
    gpu.dispatch({ kernel: probe, defines: {}, uniforms: { n }, bindings: [x.binding, bits.binding, packed.binding], workgroups: [Math.ceil(n / 64)] });
    const got = await bits.read();
    const mismatches = [...values].flatMap((v, i) => (got[i] === want[i] ? [] : [`${v} → ${got[i]}, want ${want[i]}`]));
    expect(mismatches).toEqual([]);
    expect(await packed.read()).toEqual(want);
    for (const t of [x, bits, packed]) t.release();
  });
});
