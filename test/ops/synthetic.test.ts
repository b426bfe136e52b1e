import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { f32ArrayToF16 } from '../../src/f16.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { fillSynthetic, synthetic } from '../../src/ops/synthetic.js';
import { type DType, storageBytes, Tensor } from '../../src/tensor.js';
import { syntheticBits } from '../reference/synthetic.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit } from '../helpers/ops.js';

const vectors = JSON.parse(readFileSync(`${FIXTURES}real-size-synthetic/test-vectors.json`, 'utf8')) as {
  tensors: Array<{ component: string; key: string; shape: number[]; elements: Array<{ index: number; f16_bits: string }> }>;
};
const sha256 = JSON.parse(readFileSync(`${FIXTURES}real-size-synthetic/weights-sha256.json`, 'utf8')) as {
  components: Record<string, Record<string, string>>;
};
const manifest = JSON.parse(readFileSync(`${FIXTURES}sdxl-turbo-layout/weights-manifest.json`, 'utf8')) as {
  components: Record<string, { tensors: Array<{ name: string; shape: number[] }> }>;
};
const shapeOf = (component: string, key: string): number[] => manifest.components[component]!.tensors.find((t) => t.name === key)!.shape;

// The kernel writes raw bits (no f16 arithmetic), so both dtypes run on any adapter.
const DTYPES: DType[] = ['f32', 'f16'];

/** The raw bits of `t`: halves for f16, words for f32. */
async function bits(t: Tensor): Promise<Uint16Array | Uint32Array> {
  const raw = await t.gpu.read(t.buffer, 0, storageBytes(t.shape, t.dtype));
  return t.dtype === 'f16' ? new Uint16Array(raw, 0, t.size) : new Uint32Array(raw, 0, t.size);
}

/** Elements [begin, begin + count) of `key` generated on the GPU into a NaN-poisoned tensor. */
async function generate(gpu: Gpu, key: string, shape: number[], dtype: DType, begin: number, count: number, exactOnly = false): Promise<Uint16Array | Uint32Array> {
  const out = Tensor.empty(gpu, [count], dtype, 'synthetic test');
  out.fill(NaN);
  fillSynthetic(out, key, shape, begin, { exactOnly });
  const got = await bits(out);
  out.release();
  return got;
}

/** Index of the first difference, for a readable failure. */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `element ${i}: got 0x${a[i]?.toString(16)}, want 0x${b[i]?.toString(16)}`;
  }
  return 'equal';
}

// Every kind, multipliers with exact ties (fan_in 768: s = 1/16) and with values of order 1
// (fan_in 1: s = √3, mostly normal halves) or tiny ones (fan_in 2^22: many subnormals and zeros).
const TENSORS: Array<[string, number[]]> = [
  ['down_blocks.1.attentions.0.proj_in.weight', [640, 640]],
  ['text_model.encoder.layers.0.self_attn.q_proj.weight', [768, 768]],
  ['text_model.embeddings.token_embedding.weight', [49408, 1280]],
  ['down_blocks.0.resnets.0.norm1.weight', [320]],
  ['synthetic.test.layer_norm.weight', [300000]],
  ['conv_in.bias', [320]],
  ['synthetic.test.bias', [300000]],
  ['synthetic.test.wide.weight', [1, 1]],
  ['synthetic.test.narrow.weight', [300000, 1]],
  ['synthetic.test.tiny.weight', [1, 4194304]],
];

describe('synthetic weights on the GPU', () => {
  for (const [limit, exactOnly] of [[0, false], [1024, false], [0, true]] as const) {
    it(`equal the CPU definition bit for bit at awkward sizes and offsets, both dtypes${limit ? `, ${limit}-byte bindings` : ''}${exactOnly ? ', exact path only' : ''}`, async () => {
      const gpu = limit ? await gpuWithBindingLimit(limit) : await testGpu();
      for (const dtype of DTYPES) {
        for (const [key, shape] of TENSORS) {
          const n = shape.reduce((a, d) => a * d, 1);
          const ranges: Array<[number, number]> = [[0, Math.min(n, 1)], [3, 7], [0, Math.min(n, 4097)], [n - 1, 1], [Math.max(0, n - 1001), Math.min(n, 1001)]];
          if (n > 300000) ranges.push([12345, 99999]);
          if (n > 2 ** 24 + 600) ranges.push([2 ** 24 - 301, 601]);
          for (const [begin, count] of ranges.filter(([b, c]) => b >= 0 && c > 0 && b + c <= n)) {
            const got = await generate(gpu, key, shape, dtype, begin, count, exactOnly);
            const want = syntheticBits(key, shape, dtype, begin, begin + count);
            if (firstDifference(got, want) !== 'equal') expect.fail(`${dtype} ${key} [${begin}, ${begin + count}): ${firstDifference(got, want)}`);
          }
        }
      }
    });
  }

  it('reproduce every test vector of SPEC.md', async () => {
    const gpu = await testGpu();
    let n = 0;
    for (const t of vectors.tensors) {
      for (const e of t.elements) {
        const want = Number.parseInt(e.f16_bits, 16);
        expect((await generate(gpu, t.key, t.shape, 'f16', e.index, 1))[0], `${t.key}[${e.index}]`).toBe(want);
        expect((await generate(gpu, t.key, t.shape, 'f16', e.index, 1, true))[0], `${t.key}[${e.index}] exact path`).toBe(want);
        expect(f32ArrayToF16(new Float32Array((await generate(gpu, t.key, t.shape, 'f32', e.index, 1)).buffer))[0], `${t.key}[${e.index}] f32`).toBe(want);
        n++;
      }
    }
    expect(n).toBe(64);
  });

  it('rejects a range outside the tensor', async () => {
    const out = Tensor.empty(await testGpu(), [10], 'f16');
    expect(() => fillSynthetic(out, 'conv_in.bias', [320], 311)).toThrow(/synthetic: elements \[311, 321\) outside conv_in.bias \(320\)/);
    out.release();
  });

  // Whole tensors hashed as weights-sha256.json hashes them (f16 bytes; f32 narrowed back, exact).
  const hashOf = async (t: Tensor): Promise<string> => {
    const b = await bits(t);
    const halves = t.dtype === 'f16' ? (b as Uint16Array) : f32ArrayToF16(new Float32Array(b.buffer, b.byteOffset, b.length));
    return createHash('sha256').update(new Uint8Array(halves.buffer, halves.byteOffset, halves.byteLength)).digest('hex');
  };

  it('generate whole real tensors whose sha256 is in weights-sha256.json', async () => {
    const gpu = await testGpu();
    const cases: Array<[string, string]> = [
      ['unet', 'conv_in.bias'],
      ['unet', 'down_blocks.0.resnets.0.norm1.weight'],
      ['unet', 'down_blocks.1.attentions.0.proj_in.weight'],
      ['vae', 'decoder.conv_in.weight'],
      ['vae', 'post_quant_conv.weight'],
      ['text_encoder', 'text_model.embeddings.position_embedding.weight'],
      ['text_encoder', 'text_model.encoder.layers.0.self_attn.q_proj.weight'],
      ['text_encoder', 'text_model.final_layer_norm.weight'],
      ['text_encoder_2', 'text_model.encoder.layers.0.layer_norm1.bias'],
    ];
    for (const dtype of DTYPES) {
      for (const [component, key] of cases) {
        const t = synthetic(gpu, key, shapeOf(component, key), dtype);
        expect(await hashOf(t), `${dtype} ${component} ${key}`).toBe(sha256.components[component]![key]);
        t.release();
      }
    }
  });

  it('generate a large tensor over binding windows whose sha256 is in weights-sha256.json', async () => {
    // 13.1 M elements: 7 windows of 4 MiB in f16, 13 in f32.
    const gpu = await gpuWithBindingLimit(4 * 2 ** 20);
    const key = 'down_blocks.2.attentions.0.transformer_blocks.0.ff.net.0.proj.weight';
    for (const dtype of DTYPES) {
      const t = synthetic(gpu, key, shapeOf('unet', key), dtype, { exact: true });
      expect(await hashOf(t), dtype).toBe(sha256.components.unet![key]);
      t.release();
    }
  });
});
