// LoRA end to end on the tiny fixture: the pipeline with the fixture's rank-4 LoRA merged at 0.8
// (kohya and PEFT files, loaded with `loras` and swapped in with setLoras) against diffusers'
// `lora_e2e` run, and setLoras back to none (or scale 0) giving the LoRA-free result bit for bit.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelFolder } from '../../src/io/model-folder.js';
import { nodeModelFs, openFileReader } from '../../src/io/node-file.js';
import { type LoraOpener, openLoraSource } from '../../src/models/lora.js';
import { type GenerateResult, SdxlTurboPipeline } from '../../src/pipeline/sdxl-turbo.js';
import type { DType } from '../../src/tensor.js';
import { FIXTURES, readReference, ref, type RefTensor, TINY } from '../helpers/fixtures.js';
import { maxAbsDiff, relL2, testGpu } from '../helpers/gpu.js';
import { poisonPool } from '../helpers/poison.js';

const LORA = `${FIXTURES}tiny-sdxl-extensions/lora`;
const CASE = 'lora0.8_t2i_2step_64x64';
const KOHYA = { source: `${LORA}/tiny_lora_kohya.safetensors`, scale: 0.8 };
const PEFT = { source: `${LORA}/tiny_lora_peft.safetensors`, scale: 0.8 };
const openLora: LoraOpener = (s) => (typeof s === 'string' ? openFileReader(s) : openLoraSource(s));

// Relative L2 bounds on prompt_embeds, pooled_prompt_embeds, final_latents and image (observed on
// lavapipe in brackets, both files alike). f32 compute, fp32 weights: the merge adds one f32
// rounding per weight to a chain that stays within float32 rounding of diffusers (whose merge ran
// in float64) [≤5.3e-7]; 2e-6 leaves room for another adapter's summation order. f16 compute, fp16
// weights: as test/pipeline/e2e.test.ts (fp16 weights alone move the latents by ~1e-3; the merged
// weights are rounded to f16 once, like the fp16 files) [≤1.6e-3 pooled embeddings, ≤1.1e-3
// latents; without a LoRA the same prompt's pooled embeddings are 2.1e-3 off in f16].
const BOUNDS: Record<DType, number> = { f32: 2e-6, f16: 5e-3 };
const COMPARED = ['prompt_embeds', 'pooled_prompt_embeds', 'final_latents', 'image'];

let reference: Map<string, RefTensor>;
let inputs: Map<string, Float32Array>;
beforeAll(async () => {
  reference = await readReference(`${LORA}/lora_e2e.safetensors`);
  inputs = new Map(['initial_latents', 'step0.noise', 'step1.noise'].map((n) => [n, ref(reference, `${CASE}.${n}`).data]));
});

const runs: Array<{ dtype: DType; variant: 'fp32' | 'fp16' }> = [
  { dtype: 'f32', variant: 'fp32' },
  { dtype: 'f16', variant: 'fp16' },
];

for (const { dtype, variant } of runs) {
  describe(`LoRA, ${variant} weights, ${dtype} compute`, () => {
    let plain: SdxlTurboPipeline | null = null;
    let lora: SdxlTurboPipeline | null = null;

    beforeAll(async () => {
      const gpu = await testGpu();
      if (dtype === 'f16' && !gpu.f16) return;
      const open = async (): Promise<ModelFolder> => ModelFolder.open(nodeModelFs(TINY), { variant });
      const context = { model: 'tiny', wrapPng: (b: Uint8Array) => b, openLora };
      plain = await SdxlTurboPipeline.load(gpu, await open(), { dtype }, false, context);
      // releaseEncoders: the encoders reload (merged) for every prompt, after setLoras too.
      lora = await SdxlTurboPipeline.load(gpu, await open(), { dtype, loras: [KOHYA], releaseEncoders: true }, false, context);
    });
    afterAll(async () => {
      await plain?.dispose();
      await lora?.dispose();
    });

    const generate = async (p: SdxlTurboPipeline): Promise<GenerateResult> => {
      poisonPool(p.gpu, 1 << 20);
      return p.generate({ prompt: 'a photo of a cat', steps: 2, seed: 4242, width: 64, height: 64, inputs, returnTensors: true });
    };
    const expectReference = (result: GenerateResult, label: string): void => {
      const errors = COMPARED.map((n) => relL2(result.tensors!.get(n)!.data, ref(reference, `${CASE}.${n}`).data));
      console.log(`${label} ${dtype}: rel L2 ${COMPARED.map((n, i) => `${n} ${errors[i]!.toExponential(2)}`).join(', ')}`);
      for (const e of errors) expect(e).toBeLessThan(BOUNDS[dtype]);
      // 8-bit images: a value near a rounding edge may land a level off (f16: two).
      expect(maxAbsDiff(result.images[0]!.data, ref(reference, `${CASE}.image_uint8`).data)).toBeLessThanOrEqual(dtype === 'f32' ? 1 : 2);
    };
    const expectSame = (a: GenerateResult, b: GenerateResult): void => {
      for (const n of COMPARED) expect(a.tensors!.get(n)!.data).toEqual(b.tensors!.get(n)!.data);
    };

    it('kohya file through `loras`, then PEFT through setLoras: diffusers\' merged run', async (ctx) => {
      if (!lora) return ctx.skip();
      expectReference(await generate(lora), 'kohya (load)');
      await lora.setLoras([PEFT]);
      expectReference(await generate(lora), 'peft (setLoras)');
      expect(lora.describe()).toContain(`lora: ${PEFT.source} × 0.8 (344 weights)`);
      // A bad LoRA is refused before any weight changes: the PEFT merge stays.
      await expect(lora.setLoras([PEFT, { source: '/nonexistent.safetensors' }])).rejects.toThrow('loras: /nonexistent.safetensors: cannot open (ENOENT)');
      expectReference(await generate(lora), 'peft (after a refused setLoras)');
    });

    it('setLoras to scale 0 and to none: the LoRA-free result bit for bit', async (ctx) => {
      if (!lora || !plain) return ctx.skip();
      const without = await generate(plain);
      // Sanity: the LoRA moves the result well beyond the bounds above.
      expect(relL2(without.tensors!.get('final_latents')!.data, ref(reference, `${CASE}.final_latents`).data)).toBeGreaterThan(1e-2);
      await lora.setLoras([{ ...KOHYA, scale: 0 }]);
      expectSame(await generate(lora), without);
      await lora.setLoras([]);
      expectSame(await generate(lora), without);
      await lora.setLoras([PEFT]);
      expectReference(await generate(lora), 'peft (setLoras after none)');
    });
  });
}
