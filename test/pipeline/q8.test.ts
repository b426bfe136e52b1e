// 8-bit weights (docs/Q8.md) on the tiny fixture: the same runs with fp16 weights and with
// weights 'q8' (quantized on the GPU at load), compared stage by stage — text embeddings, one
// UNet step (the 1-step run's final latents), the final image — and against diffusers. Then a
// `sdxl-turbo quantize` folder: it loads 8-bit without quantizing, as near fp16 weights, and
// the strict reader refuses I8 where the config does not declare it.

import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryReader } from '../../src/io/byte-reader.js';
import { nodeModelFs, openFileReader } from '../../src/io/node-file.js';
import { openQ8Source } from '../../src/io/q8-source.js';
import { encodeSafetensors, SafetensorsFile, type TensorToWrite } from '../../src/io/safetensors.js';
import { type LoraOpener, openLoraSource } from '../../src/models/lora.js';
import { ModelFolder } from '../../src/io/model-folder.js';
import { quantizeModel } from '../../src/node/quantize-command.js';
import { Q8Tensor } from '../../src/ops/quantize.js';
import { type GenerateResult, SdxlTurboPipeline } from '../../src/pipeline/sdxl-turbo.js';
import { checkAgainst, type WeightRegistry } from '../../src/models/weights.js';
import { planMemory } from '../../src/pipeline/dry-run.js';
import { FIXTURES, readConfigs, readReference, TINY, TINY_REF } from '../helpers/fixtures.js';
import { relL2, testGpu } from '../helpers/gpu.js';
import { poisonPool } from '../helpers/poison.js';

const CASE = 't2i_1step_64x64';
const RANDOM = /^(initial_latents|step\d+\.noise)$/;

const figures: string[] = [];
afterAll(() => console.log(`q8 vs fp16 weights (relative L2):\n  ${figures.join('\n  ')}`));

async function run(pipeline: SdxlTurboPipeline, steps: number): Promise<GenerateResult> {
  const reference = await readReference(`${TINY_REF}/e2e_t2i_${steps}step_64x64.safetensors`);
  const inputs = new Map<string, Float32Array>();
  for (const [key, t] of reference) {
    const short = key.slice(key.indexOf('.') + 1);
    if (RANDOM.test(short)) inputs.set(short, t.data);
  }
  poisonPool(pipeline.gpu, 1 << 20);
  return pipeline.generate({ prompt: 'a photo of a cat', steps, seed: 1234, width: 64, height: 64, inputs, returnTensors: true });
}

const get = (r: GenerateResult, name: string): Float32Array => r.tensors!.get(name)!.data;

describe('q8 weights on the tiny fixture', () => {
  let float: SdxlTurboPipeline;
  let q8: SdxlTurboPipeline;
  let dir: string;

  beforeAll(async () => {
    const gpu = await testGpu();
    const dtype = gpu.f16 ? 'f16' : 'f32';
    float = await SdxlTurboPipeline.load(gpu, await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp16' }), { dtype });
    q8 = await SdxlTurboPipeline.load(gpu, await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp16' }), { dtype, weights: 'q8' });
    dir = await mkdtemp(join(tmpdir(), 'sdxl-q8-'));
  });
  afterAll(async () => {
    await float?.dispose();
    await q8?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('holds every Linear and conv weight 8-bit (norms, embeddings, biases in floats); the plan counts them exactly', async () => {
    const networks = q8 as unknown as { unet: { registry: WeightRegistry }; encoders: { te1: { registry: WeightRegistry }; te2: { registry: WeightRegistry } } };
    const registries = { text_encoder: networks.encoders.te1.registry, text_encoder_2: networks.encoders.te2.registry, unet: networks.unet.registry };
    // What the UNet keeps: fused (derived) weights in place of their parts.
    const weights = registries.unet.resident();
    expect(weights.filter((w) => w.quantizable).length).toBeGreaterThan(50);
    for (const w of weights) expect(w.value instanceof Q8Tensor, w.name).toBe(w.quantizable);
    expect(q8.describe().join('\n')).toContain('Linear and conv weights 8-bit');
    // The dry run's weights are what the loaded pipeline allocated, byte for byte.
    const plan = await planMemory(readConfigs(TINY), { width: 64, height: 64, batch: 1, dtype: q8.dtype, weights: 'q8' });
    for (const [network, registry] of Object.entries(registries)) {
      const allocated = registry.resident().reduce((sum, w) => sum + (w.value instanceof Q8Tensor ? w.value.words : w.value).buffer.size, 0);
      expect(plan.find((r) => r.network === network)!.weightBytes, network).toBe(allocated);
    }
  });

  // Tolerances. Rounding each weight to 8 bits errs by ≈0.5% of it (test/ops/quantize.test.ts);
  // the tiny fixture's rows are 32–64 long (one or two blocks), and the errors of successive
  // layers add up. Observed [lavapipe, f16 compute]: prompt embeddings 1.0e-2, pooled 2.0e-2
  // (one Linear more: the projection), one UNet step 8.9e-3 of the latents, the image 3.3e-3
  // (the VAE is in floats). Bounds ≈2.5× those; a wrong dequantization errs by O(1).
  it('stays near fp16 weights: embeddings, one UNet step, the image', async () => {
    const [a, b] = [await run(float, 1), await run(q8, 1)];
    const err = (name: string): number => relL2(get(b, name), get(a, name));
    const measured = {
      prompt_embeds: err('prompt_embeds'),
      pooled_prompt_embeds: err('pooled_prompt_embeds'),
      'final_latents (one UNet step)': err('final_latents'),
      image: err('image'),
    };
    for (const [name, e] of Object.entries(measured)) figures.push(`${CASE} ${name}: ${e.toExponential(2)}`);
    expect(measured.prompt_embeds).toBeLessThan(0.025); // see above
    expect(measured.pooled_prompt_embeds).toBeLessThan(0.05);
    expect(measured['final_latents (one UNet step)']).toBeLessThan(0.025);
    expect(measured.image).toBeLessThan(0.01);
    // 8-bit weights change the result: the q8 kernels ran, not the float ones.
    expect(measured.prompt_embeds).toBeGreaterThan(1e-4);
    // And against diffusers' own fp32 run: the float pipeline's error plus quantization's.
    const reference = await readReference(`${TINY_REF}/e2e_${CASE}.safetensors`);
    const image = relL2(get(b, 'image'), reference.get(`${CASE}.image`)!.data);
    figures.push(`${CASE} image vs diffusers fp32: ${image.toExponential(2)} (fp16 weights: ${relL2(get(a, 'image'), reference.get(`${CASE}.image`)!.data).toExponential(2)})`);
    expect(image).toBeLessThan(0.01); // quantization's 3.3e-3 dominates the f16 error (3.8e-4 here), bound as above
  });

  it('four steps: the final image near fp16 weights', async () => {
    // Each step's error feeds the next, yet the image stays as close [observed 3.4e-3]; bound ~3×.
    const e = relL2(get(await run(q8, 4), 'image'), get(await run(float, 4), 'image'));
    figures.push(`t2i_4step_64x64 image: ${e.toExponential(2)}`);
    expect(e).toBeLessThan(0.01);
  });

  it('LoRAs merge in floats before quantizing; setLoras([]) gives the plain q8 result bit for bit', async () => {
    const dirLora = `${FIXTURES}tiny-sdxl-extensions/lora`;
    const name = 'lora0.8_t2i_2step_64x64';
    const reference = await readReference(`${dirLora}/lora_e2e.safetensors`);
    const inputs = new Map(['initial_latents', 'step0.noise', 'step1.noise'].map((n) => [n, reference.get(`${name}.${n}`)!.data]));
    const openLora: LoraOpener = (s) => (typeof s === 'string' ? openFileReader(s) : openLoraSource(s));
    const folder = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp16' });
    const lora = await SdxlTurboPipeline.load(q8.gpu, folder, { dtype: q8.dtype, weights: 'q8', loras: [{ source: `${dirLora}/tiny_lora_kohya.safetensors`, scale: 0.8 }] }, false, { model: 'tiny', wrapPng: (b: Uint8Array) => b, openLora });
    try {
      const generate = async (p: SdxlTurboPipeline): Promise<GenerateResult> => {
        poisonPool(p.gpu, 1 << 20);
        return p.generate({ prompt: 'a photo of a cat', steps: 2, seed: 4242, width: 64, height: 64, inputs, returnTensors: true });
      };
      const want = reference.get(`${name}.final_latents`)!.data;
      const merged = relL2(get(await generate(lora), 'final_latents'), want);
      const plain = relL2(get(await generate(q8), 'final_latents'), want);
      figures.push(`${name} final_latents vs diffusers' merged run: q8 + LoRA ${merged.toExponential(2)}, q8 without ${plain.toExponential(2)}`);
      // The merged weights were quantized (the error is q8's [observed 7.8e-3], bound as above),
      // and the merge is in them: without it the latents are 10× farther off [8.2e-2].
      expect(merged).toBeLessThan(0.025);
      expect(merged).toBeLessThan(plain / 2);
      await lora.setLoras([]);
      expect(get(await generate(lora), 'final_latents')).toEqual(get(await generate(q8), 'final_latents'));
    } finally {
      await lora.dispose();
    }
  });

  it('sdxl-turbo quantize writes a folder that loads 8-bit directly, near fp16 weights as quantizing at load', async () => {
    const out = join(dir, 'q8');
    const report = await quantizeModel(TINY, out, { variant: 'fp16' });
    expect(report.files.map((f) => f.path).sort()).toEqual([
      'text_encoder/model.safetensors',
      'text_encoder_2/model.safetensors',
      'unet/diffusion_pytorch_model.safetensors',
      'vae/diffusion_pytorch_model.fp16.safetensors',
    ]);
    const unetConfig = JSON.parse(await readFile(join(out, 'unet/config.json'), 'utf8'));
    expect(unetConfig.quantization).toEqual({ method: 'q8', block_size: 32, scale_dtype: 'float16', symmetric: true });
    const folder = await ModelFolder.open(nodeModelFs(out));
    const entry = folder.weights('unet').entries.get('conv_in.weight')!;
    expect(entry.q8).toBe(true);
    const loaded = await SdxlTurboPipeline.load(q8.gpu, folder, { dtype: q8.dtype });
    try {
      // The file holds exactly what quantizing at load makes, weight for weight …
      const unetOf = (p: SdxlTurboPipeline): WeightRegistry => (p as unknown as { unet: { registry: WeightRegistry } }).unet.registry;
      const convIn = async (p: SdxlTurboPipeline) => (unetOf(p).weights.get('conv_in.weight')!.value as Q8Tensor).read();
      expect(await convIn(loaded)).toEqual(await convIn(q8));
      // … but the fused weights (q|k|v with a LayerNorm's γ folded in) are built from the
      // dequantized parts and quantized again: a second rounding of ≈0.5% per fused weight, so
      // the folder's run meets the same bar against fp16 weights as quantizing at load (bounds
      // of 'stays near fp16 weights' above).
      const [f, b] = [await run(float, 1), await run(loaded, 1)];
      const err = (name: string): number => relL2(get(b, name), get(f, name));
      figures.push(`${CASE} quantize folder: prompt_embeds ${err('prompt_embeds').toExponential(2)}, image ${err('image').toExponential(2)}`);
      expect(err('prompt_embeds')).toBeLessThan(0.025);
      expect(err('image')).toBeLessThan(0.01);
    } finally {
      await loaded.dispose();
    }
    await expect(quantizeModel(TINY, out)).rejects.toThrow(/--out .*q8: already exists/);
    await expect(quantizeModel(out, join(dir, 'again'))).rejects.toThrow(/text_encoder, text_encoder_2, unet 8-bit already/);
  });

  it('refuses I8 where the config does not declare it, and a quantization it does not know', async () => {
    const out = join(dir, 'q8');
    const broken = join(dir, 'broken');
    await cp(out, broken, { recursive: true });
    const config = JSON.parse(await readFile(join(broken, 'unet/config.json'), 'utf8'));
    delete config.quantization;
    await writeFile(join(broken, 'unet/config.json'), JSON.stringify(config));
    await expect(ModelFolder.open(nodeModelFs(broken))).rejects.toThrow(/unet\/diffusion_pytorch_model\.safetensors: tensor \S+ is I8, but \S+unet\/config\.json has no "quantization" entry/);
    config.quantization = { method: 'q4' };
    await writeFile(join(broken, 'unet/config.json'), JSON.stringify(config));
    await expect(ModelFolder.open(nodeModelFs(broken))).rejects.toThrow(/unet\/config\.json: "quantization" is \{"method":"q4"\}; the only one supported is/);
  });
});

describe('the strict reader of 8-bit files', () => {
  const file = (tensors: TensorToWrite[]): Promise<SafetensorsFile> => SafetensorsFile.open(memoryReader(encodeSafetensors(tensors), 'q8.safetensors'));
  const i8 = (name: string, shape: number[]): TensorToWrite => ({ name, dtype: 'I8', shape, data: new Int8Array(shape.reduce((a, b) => a * b, 1)) });
  const f16 = (name: string, shape: number[]): TensorToWrite => ({ name, dtype: 'F16', shape, data: new Uint16Array(shape.reduce((a, b) => a * b, 1)) });

  it('pairs each I8 tensor with its F16 scales of shape (rows, ceil(K / 32)), naming what is wrong', async () => {
    const ok = openQ8Source(await file([i8('w', [3, 2, 3, 3]), f16('w_scale', [3, 1]), f16('b', [3])]));
    expect([...ok.entries.values()].map((e) => [e.name, e.q8 ?? false])).toEqual([['w', true], ['b', false]]);
    expect((await ok.readQ8!('w')).scales).toHaveLength(3);
    await expect(ok.read('w')).rejects.toThrow('q8.safetensors: tensor w is 8-bit; read it with readQ8');
    for (const [tensors, message] of [
      [[i8('w', [3, 40])], 'q8.safetensors: tensor w is I8 and needs w_scale F16 [3, 2], found none'],
      [[i8('w', [3, 40]), f16('w_scale', [3, 1])], 'tensor w is I8 and needs w_scale F16 [3, 2], found F16 [3, 1]'],
      [[i8('w', [40])], 'tensor w is I8 of shape [40]; 8-bit weights are (rows, K, …)'],
      [[f16('w', [3, 40]), f16('w_scale', [3, 2])], 'tensor w_scale looks like the scales of w, which is not I8'],
    ] as const) {
      await expect(file([...tensors]).then(openQ8Source)).rejects.toThrow(message);
    }
  });

  it('takes 8-bit tensors only for Linear and conv weights', () => {
    const source = { description: 'q8.safetensors', entries: new Map([['norm.weight', { name: 'norm.weight', format: 'f16' as const, shape: [4, 4], q8: true }]]), read: () => Promise.reject(new Error('unread')) };
    expect(checkAgainst(new Map([['norm.weight', [4, 4]]]), source, new Set(), new Set())).toEqual([
      { kind: 'not 8-bit-able', detail: 'norm.weight is 8-bit (I8), but only Linear and conv weights may be' },
    ]);
    expect(checkAgainst(new Map([['norm.weight', [4, 4]]]), source, new Set(), new Set(['norm.weight']))).toEqual([]);
  });
});

