import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { f16BitsToF32, f32ToF16Bits } from '../../src/f16.js';
import { f64ToF16Bits, fnv1a32, kindOf, pcgHash, synthF16Bits, SyntheticSource, type SynthKind } from '../../src/io/synthetic.js';
import { FIXTURES } from '../helpers/fixtures.js';

const manifest: unknown = JSON.parse(readFileSync(`${FIXTURES}sdxl-turbo-layout/weights-manifest.json`, 'utf8'));
const vectors = JSON.parse(readFileSync(`${FIXTURES}real-size-synthetic/test-vectors.json`, 'utf8')) as {
  tensors: Array<{
    component: string;
    key: string;
    shape: number[];
    kind: SynthKind;
    fnv1a32: number;
    seed: number;
    elements: Array<{ index: number; h: number; value_f64: string; f16_bits: string }>;
  }>;
};
const sha256 = JSON.parse(readFileSync(`${FIXTURES}real-size-synthetic/weights-sha256.json`, 'utf8')) as {
  components: Record<string, Record<string, string>>;
};

/** The adjacent double above (+1) or below (−1) a positive finite x. */
function nextDouble(x: number, dir: 1 | -1): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  view.setBigUint64(0, view.getBigUint64(0) + BigInt(dir));
  return view.getFloat64(0);
}

describe('float64 → float16 rounding', () => {
  it('is exact on every half, rounds midpoints to even and their neighbours to the nearer half', () => {
    let checked = 0;
    for (let h = 0; h < 0x7c00; h++) {
      for (const sign of [0, 0x8000]) {
        const s = sign ? -1 : 1;
        const a = f16BitsToF32(h);
        expect(f64ToF16Bits(s * a)).toBe(sign | h);
        // The midpoint to the next half up; above 0x7bff (65504) the step to 65536 is infinity's.
        const mid = (a + (h === 0x7bff ? 65536 : f16BitsToF32(h + 1))) / 2;
        const even = (h & 1) === 0 ? h : h + 1;
        const below = f64ToF16Bits(s * nextDouble(mid, -1));
        const at = f64ToF16Bits(s * mid);
        const above = f64ToF16Bits(s * nextDouble(mid, 1));
        if (below !== (sign | h) || at !== (sign | even) || above !== (sign | (h + 1))) {
          throw new Error(`half 0x${h.toString(16)} sign ${sign}: midpoint ${mid} → ${below} ${at} ${above}`);
        }
        checked += 4;
      }
    }
    expect(checked).toBe(4 * 2 * 0x7c00);
    expect(f64ToF16Bits(-0)).toBe(0x8000);
    expect(f64ToF16Bits(2 ** -26)).toBe(0x0000); // below half the smallest subnormal
    expect(f64ToF16Bits(-(2 ** -26))).toBe(0x8000);
    expect(f64ToF16Bits(1e300)).toBe(0x7c00);
    expect(f64ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(f64ToF16Bits(NaN) & 0x7e00).toBe(0x7e00);
    expect(f64ToF16Bits(5e-324)).toBe(0x0000); // a float64 subnormal
  });

  it('rounds once, not through float32', () => {
    // 1 + 2^-11 is a tie between 0x3c00 and 0x3c01; the 2^-40 above it is lost in float32.
    const v = 1 + 2 ** -11 + 2 ** -40;
    expect(f64ToF16Bits(v)).toBe(0x3c01);
    expect(f32ToF16Bits(v)).toBe(0x3c00);
  });
});

describe('synthetic weights (SPEC.md)', () => {
  it('reproduces every test vector: key hash, seed, element hash, kind, value rounding and bits', () => {
    let n = 0;
    for (const t of vectors.tensors) {
      expect(fnv1a32(t.key), t.key).toBe(t.fnv1a32);
      const seed = pcgHash(t.fnv1a32);
      expect(seed, t.key).toBe(t.seed);
      expect(kindOf(t.key, t.shape), t.key).toBe(t.kind);
      for (const e of t.elements) {
        const bits = Number.parseInt(e.f16_bits, 16);
        expect(pcgHash((e.index + seed) >>> 0), `${t.key}[${e.index}] h`).toBe(e.h);
        expect(f64ToF16Bits(Number(e.value_f64)), `${t.key}[${e.index}] rounding of ${e.value_f64}`).toBe(bits);
        expect(synthF16Bits(t.key, t.shape, e.index, e.index + 1)[0], `${t.key}[${e.index}]`).toBe(bits);
        n++;
      }
    }
    expect(n).toBe(64);
  });

  it('lists each component as the manifest does, with the spec’s counts of kinds', () => {
    const expected: Record<string, [number, number, number, number]> = {
      text_encoder: [2, 72, 25, 97],
      text_encoder_2: [2, 193, 65, 257],
      vae: [0, 72, 52, 124],
      unet: [0, 794, 256, 630],
    };
    for (const [component, counts] of Object.entries(expected)) {
      const source = SyntheticSource.fromManifest(manifest, component);
      const kinds = { embedding: 0, weight: 0, norm_weight: 0, bias: 0 };
      for (const e of source.entries.values()) {
        kinds[kindOf(e.name, e.shape)]++;
        expect(e.format).toBe('f16');
      }
      expect([kinds.embedding, kinds.weight, kinds.norm_weight, kinds.bias], component).toEqual(counts);
      expect([...source.entries.keys()].sort()).toEqual(Object.keys(sha256.components[component]!).sort());
    }
    expect(() => SyntheticSource.fromManifest(manifest, 'unet_3')).toThrow(/no tensor list for component unet_3/);
  });

  it('generates whole tensors whose sha256 matches weights-sha256.json', async () => {
    // All of the VAE and CLIP-L (206 M elements, every kind), a few of the others.
    const cases: Array<[string, string]> = [
      ...['vae', 'text_encoder'].flatMap((c) => Object.keys(sha256.components[c]!).map((k): [string, string] => [c, k])),
      ['unet', 'conv_in.bias'],
      ['unet', 'down_blocks.0.resnets.0.norm1.weight'],
      ['text_encoder_2', 'text_model.encoder.layers.0.self_attn.q_proj.weight'],
      ['text_encoder_2', 'text_model.final_layer_norm.weight'],
      ['unet', 'down_blocks.1.attentions.0.proj_in.weight'],
      // medium: 13.1 M elements
      ['unet', 'down_blocks.2.attentions.0.transformer_blocks.0.ff.net.0.proj.weight'],
    ];
    expect(cases.length).toBe(248 + 196 + 6);
    let elements = 0;
    let seconds = 0;
    for (const [component, key] of cases) {
      const source = SyntheticSource.fromManifest(manifest, component);
      const start = performance.now();
      const { format, data } = await source.read(key);
      seconds += (performance.now() - start) / 1000;
      elements += data.length;
      expect(format).toBe('f16');
      const hash = createHash('sha256').update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).digest('hex');
      expect(hash, `${component} ${key}`).toBe(sha256.components[component]![key]);
    }
    console.log(`synthetic weights: ${elements} elements generated at ${(elements / seconds / 1e6).toFixed(1)} M elements/s`);
  });

  it('generates a range equal to the same slice of the whole tensor, and rejects bad ranges', () => {
    const key = 'down_blocks.1.attentions.0.proj_in.weight';
    const whole = synthF16Bits(key, [640, 640]);
    expect(synthF16Bits(key, [640, 640], 1000, 5003)).toEqual(whole.slice(1000, 5003));
    expect(() => synthF16Bits(key, [640, 640], 5, 409601)).toThrow(/range \[5, 409601\) outside down_blocks/);
    expect(() => kindOf('x', [])).toThrow(/no rule for x/);
  });
});
