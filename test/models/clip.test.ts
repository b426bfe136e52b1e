// Parity of both text encoders with transformers on the tiny fixture: the three reference
// prompts run as one batch (so each row's own EOS position is pooled), compared tensor by
// tensor with what transformers/diffusers computed from the fp32 weights.

import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { openFileReader } from '../../src/io/node-file.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import {
  CLIPTextModel,
  CLIPTextModelWithProjection,
  type CLIPTextConfig,
  type CLIPTextOutput,
  parseCLIPTextConfig,
} from '../../src/models/clip.js';
import { concat } from '../../src/ops/concat.js';
import type { DType, Tensor } from '../../src/tensor.js';
import { readReference, ref, type RefTensor, TINY, TINY_REF } from '../helpers/fixtures.js';
import { relL2, testGpu } from '../helpers/gpu.js';
import { poisonPool } from '../helpers/poison.js';

const PROMPTS = ['p0', 'p1', 'p2'] as const; // 'a photo of a cat', '', a 16-word sentence
const L = 77;

const config = (component: string): CLIPTextConfig =>
  parseCLIPTextConfig(JSON.parse(readFileSync(`${TINY}/${component}/config.json`, 'utf8')), `${component}/config.json`);

async function openWeights(component: string, file: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(await openFileReader(`${TINY}/${component}/${file}`));
}

let reference: Map<string, RefTensor>;
beforeAll(async () => {
  reference = await readReference(`${TINY_REF}/text_encoders.safetensors`);
});

/** The batch's input ids, prompt after prompt, from the reference file. */
const batchIds = (encoder: 'te1' | 'te2'): Int32Array =>
  Int32Array.from(PROMPTS.flatMap((p) => Array.from(ref(reference, `${p}.${encoder}.input_ids`).data)));

/** Relative L2 of each prompt's row of `actual` (batch-major) against its reference tensor. */
async function rowErrors(actual: Tensor, name: (prompt: string) => string): Promise<number[]> {
  const values = await actual.read();
  const rowSize = values.length / PROMPTS.length;
  return PROMPTS.map((p, b) => {
    const expected = ref(reference, name(p));
    expect(expected.data.length).toBe(rowSize);
    return relL2(values.subarray(b * rowSize, (b + 1) * rowSize), expected.data);
  });
}

function releaseOutput(out: CLIPTextOutput): void {
  for (const t of [...(out.hiddenStates ?? []), out.penultimate, out.lastHiddenState, out.pooled]) t.release();
}

interface Run {
  readonly weights: 'model.safetensors' | 'model.fp16.safetensors';
  readonly dtype: DType;
  /** Relative-L2 bound for every compared tensor, and why. */
  readonly tolerance: number;
  readonly why: string;
  /** Exercise the keep-every-layer path (the other runs keep only the penultimate). */
  readonly hiddenStates: boolean;
}

const RUNS: Run[] = [
  {
    weights: 'model.safetensors',
    dtype: 'f32',
    tolerance: 1e-5,
    why: 'same weights, f32 math: only summation order differs from torch (observed ≤ 6e-7)',
    hiddenStates: true,
  },
  {
    weights: 'model.fp16.safetensors',
    dtype: 'f32',
    tolerance: 1e-2,
    why: 'f16-rounded weights (rel. 2^-11 each) against an fp32-weight reference, f32 math (observed ≤ 1.5e-3)',
    hiddenStates: false,
  },
  {
    weights: 'model.fp16.safetensors',
    dtype: 'f16',
    tolerance: 1e-2,
    why: 'f16 weights and f16 activations (rel. 2^-11 per rounding) through 3–4 layers (observed ≤ 2.2e-3)',
    hiddenStates: false,
  },
];

describe('CLIP text encoders on the tiny fixture', () => {
  for (const run of RUNS) {
    it(`${run.weights} in ${run.dtype}: every output matches transformers (${run.why})`, async (ctx) => {
      const gpu = await testGpu();
      if (run.dtype === 'f16' && !gpu.f16) ctx.skip();
      const te1 = CLIPTextModel.create(config('text_encoder'));
      const te2 = CLIPTextModelWithProjection.create(config('text_encoder_2'));
      for (const [build, component] of [[te1, 'text_encoder'], [te2, 'text_encoder_2']] as const) {
        const source = await openWeights(component, run.weights);
        await build.registry.load(gpu, source, run.dtype);
        await source.close();
      }
      // Largest activation: te2's MLP, (3, 77, 80) f32.
      poisonPool(gpu, PROMPTS.length * L * 80 * 4);

      const out1 = te1.forward(batchIds('te1'), { outputHiddenStates: run.hiddenStates });
      const out2 = te2.forward(batchIds('te2'), { outputHiddenStates: run.hiddenStates });
      const promptEmbeds = concat([out1.penultimate, out2.penultimate], 2); // (3, 77, 24 + 32)

      expect(out1.hiddenStates !== null && out2.hiddenStates !== null).toBe(run.hiddenStates);
      const errors: Record<string, number[]> = {};
      if (out1.hiddenStates && out2.hiddenStates) {
        errors['te1 embeddings'] = await rowErrors(out1.hiddenStates[0]!, (p) => `${p}.te1.embeddings`);
        errors['te2 embeddings'] = await rowErrors(out2.hiddenStates[0]!, (p) => `${p}.te2.embeddings`);
      }
      Object.assign(errors, {
        'te1 penultimate': await rowErrors(out1.penultimate, (p) => `${p}.te1.hidden_states_penultimate`),
        'te1 last_hidden_state': await rowErrors(out1.lastHiddenState, (p) => `${p}.te1.last_hidden_state`),
        'te1 pooler_output': await rowErrors(out1.pooled, (p) => `${p}.te1.pooler_output`),
        'te2 penultimate': await rowErrors(out2.penultimate, (p) => `${p}.te2.hidden_states_penultimate`),
        'te2 last_hidden_state': await rowErrors(out2.lastHiddenState, (p) => `${p}.te2.last_hidden_state`),
        'te2 text_embeds': await rowErrors(out2.textEmbeds, (p) => `${p}.te2.text_embeds`),
        prompt_embeds: await rowErrors(promptEmbeds, (p) => `${p}.prompt_embeds`),
        pooled_prompt_embeds: await rowErrors(out2.textEmbeds, (p) => `${p}.pooled_prompt_embeds`),
      });
      console.log(`${run.weights} / ${run.dtype}: relative L2 per prompt ${PROMPTS.join(', ')}\n${Object.entries(errors)
        .map(([k, e]) => `  ${k.padEnd(22)} ${e.map((x) => x.toExponential(2)).join('  ')}`)
        .join('\n')}`);
      for (const [name, e] of Object.entries(errors)) expect(Math.max(...e), `${name} (${run.why})`).toBeLessThan(run.tolerance);

      if (run.hiddenStates) {
        // hidden_states[0..n]: embeddings, one per layer; the penultimate is entry n - 1.
        expect(out1.hiddenStates).toHaveLength(te1.config.numHiddenLayers + 1);
        expect(out2.hiddenStates).toHaveLength(te2.config.numHiddenLayers + 1);
        expect(out1.hiddenStates![te1.config.numHiddenLayers - 1]).toBe(out1.penultimate);
        expect(out2.hiddenStates![te2.config.numHiddenLayers - 1]).toBe(out2.penultimate);
      }
      for (const t of [promptEmbeds, out2.textEmbeds]) t.release();
      releaseOutput(out1);
      releaseOutput(out2);
      te1.registry.release();
      te2.registry.release();
      await gpu.sync();
    });
  }

  it('rejects ids outside the vocabulary and partial rows before touching the GPU', () => {
    const model = CLIPTextModel.create(config('text_encoder'));
    const ids = new Int32Array(L).fill(49407);
    ids[5] = 49408;
    expect(() => model.forward(ids)).toThrow(/input id 49408 at 5 outside the vocabulary 0\.\.49407/);
    expect(() => model.forward(new Int32Array(L + 1))).toThrow(/78 input ids are not whole rows of 77/);
    expect(() => model.forward(new Int32Array(78), { sequenceLength: 78 })).toThrow(/sequence length 78 outside 1\.\.77/);
  });
});
