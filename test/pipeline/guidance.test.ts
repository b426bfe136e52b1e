// Classifier-free guidance, negative prompts and the Euler schedulers end to end on the tiny
// fixture: the whole pipeline against diffusers' four guided runs
// (tiny-sdxl-extensions/guidance), with the recorded draws and from the seed; batches
// (prompts × images per prompt, negatives ordered as diffusers repeats them); guidance ≤ 1;
// force_zeros_for_empty_prompt false; and the options' bad values.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { ModelFolder, type ModelFs } from '../../src/io/model-folder.js';
import { nodeModelFs } from '../../src/io/node-file.js';
import { dryRun, shapeInput, UNBOUNDED } from '../../src/pipeline/dry-run.js';
import { resolveGenerate } from '../../src/pipeline/options.js';
import { prepareModel, SdxlTurboPipeline } from '../../src/pipeline/sdxl-turbo.js';
import type { DType } from '../../src/tensor.js';
import { FIXTURES, readConfigs, readReference, ref, type RefTensor, TINY } from '../helpers/fixtures.js';
import { maxAbsDiff, relL2, testGpu } from '../helpers/gpu.js';
import { poisonPool } from '../helpers/poison.js';

const GUIDANCE = `${FIXTURES}tiny-sdxl-extensions/guidance`;

interface Case {
  readonly name: string;
  readonly kind: 't2i' | 'i2i';
  readonly prompt: string;
  readonly negative_prompt: string | null;
  readonly guidance_scale: number;
  readonly steps: number;
  readonly strength?: number;
  readonly height: number;
  readonly width: number;
  readonly seed: number;
  readonly scheduler_class: string;
}

const CASES = (JSON.parse(readFileSync(`${GUIDANCE}/index.json`, 'utf8')) as { guidance: { cases: Case[] } }).guidance.cases;
const RANDOM_INPUTS = /^(initial_latents|step\d+\.noise|posterior_noise|add_noise_noise)$/;

// Tolerances (relative L2; observed on lavapipe in brackets), test/pipeline/e2e.test.ts's and
// for the same reasons. Guidance multiplies the UNet's own rounding by up to 2g − 1 (the
// difference of the two halves times g), so the unguided chain's ≤5.2e-7 grows here: f32 with
// fp32 weights [latents ≤3.4e-6 at g = 7, image ≤1.2e-6, embeddings ≤4.5e-7] stays under
// 1e-5, which leaves room for another adapter's summation order; f16 compute with fp16
// weights [image ≤1.7e-3, embeddings ≤2.1e-3] under 5e-3, and latents at g = 7 under 1e-2:
// there the f16 roundings that differ between equally exact summation orders (a few elements
// in 10⁴ of a group norm's output, whose own error stays 2.1e-4) grow through three guided
// steps, and the six group norm variants measured 3.98–5.19e-3 for cfg7_neg_euler (the other
// cases ≤3.5e-3 with each). 8-bit images: one level in f32 (a value on a rounding edge) [1],
// two in f16 [2].
const BOUNDS: Record<DType, { latents: number; image: number; embeds: number; uint8: number }> = {
  f32: { latents: 1e-5, image: 1e-5, embeds: 1e-5, uint8: 1 },
  // uint8: a pixel of an f16 image moves with the f32 summation order of the reductions before
  // it (the group norms' statistics, summed in pairs since 2026-12-06: one pixel of cfg7 went
  // from 2 to 3 levels, image rel L2 1.35e-3 → 1.54e-3); the relative bounds are the measure.
  f16: { latents: 1e-2, image: 5e-3, embeds: 5e-3, uint8: 3 },
};

const readCase = async (c: Case): Promise<(name: string) => RefTensor> => {
  const reference = await readReference(`${GUIDANCE}/guidance.safetensors`);
  return (name) => ref(reference, `${c.name}.${name}`);
};

/** The recorded draws of a case, by the names generate() takes. */
async function recordedInputs(c: Case): Promise<Map<string, Float32Array>> {
  const reference = await readReference(`${GUIDANCE}/guidance.safetensors`);
  const inputs = new Map<string, Float32Array>();
  for (const [key, t] of reference) {
    if (!key.startsWith(`${c.name}.`)) continue;
    const short = key.slice(c.name.length + 1);
    if (RANDOM_INPUTS.test(short)) inputs.set(short, t.data);
  }
  return inputs;
}

const options = (c: Case) => ({
  prompt: c.prompt,
  ...(c.negative_prompt === null ? {} : { negativePrompt: c.negative_prompt }),
  guidanceScale: c.guidance_scale,
  steps: c.steps,
  seed: c.seed,
  width: c.width,
  height: c.height,
  returnTensors: true,
});

async function run(pipeline: SdxlTurboPipeline, c: Case, inputs?: Map<string, Float32Array>) {
  const get = await readCase(c);
  const common = { ...options(c), ...(inputs ? { inputs } : {}) };
  return c.kind === 'i2i'
    ? pipeline.imageToImage({ ...common, strength: c.strength!, image: { width: c.width, height: c.height, data: Uint8Array.from(get('input_image_uint8').data) } })
    : pipeline.generate(common);
}

/** Compares a result with the case's reference; prints the figures. */
async function compare(label: string, c: Case, result: Awaited<ReturnType<typeof run>>, dtype: DType): Promise<void> {
  const get = await readCase(c);
  const tensors = result.tensors!;
  const bound = BOUNDS[dtype];
  const err = (name: string): number => relL2(tensors.get(name)!.data, get(name).data);
  const latents = err('final_latents');
  const image = err('image');
  const uint8 = maxAbsDiff(result.images[0]!.data, get('image_uint8').data);
  const embeds = Math.max(err('prompt_embeds'), err('pooled_prompt_embeds'));
  console.log(`${c.name} ${label}: final_latents ${latents.toExponential(2)}, image ${image.toExponential(2)}, uint8 max |Δ| ${uint8}, embeds ${embeds.toExponential(2)}`);
  if (c.negative_prompt === null) {
    // force_zeros_for_empty_prompt: exactly zeros.
    expect(maxAbsDiff(tensors.get('negative_prompt_embeds')!.data, get('negative_prompt_embeds').data)).toBe(0);
    expect(maxAbsDiff(tensors.get('negative_pooled_prompt_embeds')!.data, get('negative_pooled_prompt_embeds').data)).toBe(0);
  } else {
    expect(err('negative_prompt_embeds')).toBeLessThan(bound.embeds);
    expect(err('negative_pooled_prompt_embeds')).toBeLessThan(bound.embeds);
  }
  expect(embeds).toBeLessThan(bound.embeds);
  expect(latents).toBeLessThan(bound.latents);
  expect(image).toBeLessThan(bound.image);
  expect(uint8).toBeLessThanOrEqual(bound.uint8);
}

for (const { dtype, variant } of [{ dtype: 'f32', variant: 'fp32' }, { dtype: 'f16', variant: 'fp16' }] as const) {
  describe(`guided runs, ${variant} weights, ${dtype} compute`, () => {
    // The folder's scheduler (Euler-A, trailing), and SDXL base's (Euler, leading) by the options.
    const pipelines = new Map<string, SdxlTurboPipeline>();
    const pipelineFor = (c: Case): SdxlTurboPipeline | undefined => pipelines.get(c.scheduler_class);

    beforeAll(async () => {
      const gpu = await testGpu();
      if (dtype === 'f16' && !gpu.f16) return;
      const open = (): Promise<ModelFolder> => ModelFolder.open(nodeModelFs(TINY), { variant });
      pipelines.set('EulerAncestralDiscreteScheduler', await SdxlTurboPipeline.load(gpu, await open(), { dtype }));
      pipelines.set('EulerDiscreteScheduler', await SdxlTurboPipeline.load(gpu, await open(), { dtype, scheduler: 'euler', timestepSpacing: 'leading' }));
    });
    afterAll(async () => {
      for (const p of pipelines.values()) await p.dispose();
    });

    for (const c of CASES) {
      it(`${c.name} with the recorded draws`, async (ctx) => {
        const pipeline = pipelineFor(c);
        if (!pipeline) return ctx.skip();
        poisonPool(pipeline.gpu, 1 << 20);
        await compare(`${variant}/${dtype} --inputs`, c, await run(pipeline, c, await recordedInputs(c)), dtype);
      });
      if (dtype === 'f32') {
        it(`${c.name} from the seed (every draw by the torch-compatible generator)`, async () => {
          await compare(`${variant}/${dtype} seed`, c, await run(pipelineFor(c)!, c), dtype);
        });
      }
    }

    if (dtype === 'f32') {
      it("batches: prompts × images per prompt, each negative prompt on its prompt's rows", async () => {
        // Rows [P, P, Q, Q] with negatives [N, N, M, M] (diffusers repeats both per prompt):
        // the first two rows get cfg5's draws and must each give cfg5's result.
        const c = CASES.find((k) => k.name.startsWith('cfg5'))!;
        const get = await readCase(c);
        const recorded = await recordedInputs(c);
        const inputs = new Map([...recorded].map(([name, data]) => [name, Float32Array.from({ length: 4 * data.length }, (_, i) => data[i % data.length]!)]));
        const result = await pipelines.get(c.scheduler_class)!.generate({
          ...options(c),
          prompt: [c.prompt, 'a dog on a beach'],
          negativePrompt: [c.negative_prompt!, 'bright colors'],
          imagesPerPrompt: 2,
          inputs,
        });
        const n = get('final_latents').data.length;
        const latents = result.tensors!.get('final_latents')!.data;
        const negatives = result.tensors!.get('negative_pooled_prompt_embeds')!;
        expect(negatives.shape).toEqual([4, 20]);
        for (const row of [0, 1]) {
          expect(relL2(latents.subarray(row * n, (row + 1) * n), get('final_latents').data)).toBeLessThan(BOUNDS.f32.latents);
          expect(relL2(negatives.data.subarray(row * 20, (row + 1) * 20), get('negative_pooled_prompt_embeds').data)).toBeLessThan(BOUNDS.f32.embeds);
        }
        // The other prompt's rows differ from the first's (its own prompt and negative).
        expect(relL2(latents.subarray(2 * n, 3 * n), get('final_latents').data)).toBeGreaterThan(1e-3);
        expect(result.images.map((im) => im.parameters.negativePrompt)).toEqual([c.negative_prompt, c.negative_prompt, 'bright colors', 'bright colors']);
      });

      it('guidance ≤ 1 runs no negative branch, whatever the negative prompt (as diffusers)', async () => {
        const c = CASES.find((k) => k.name.startsWith('cfg5'))!;
        const pipeline = pipelines.get(c.scheduler_class)!;
        const plain = await pipeline.generate({ ...options(c), guidanceScale: 0, negativePrompt: undefined });
        const one = await pipeline.generate({ ...options(c), guidanceScale: 1 });
        expect(maxAbsDiff(one.tensors!.get('final_latents')!.data, plain.tensors!.get('final_latents')!.data)).toBe(0);
        expect([...one.tensors!.keys()]).toEqual(['final_latents', 'image', 'prompt_embeds', 'pooled_prompt_embeds']);
      });

      it('force_zeros_for_empty_prompt false: no negative prompt means the embeddings of ""', async () => {
        const tiny = nodeModelFs(TINY);
        const fs: ModelFs = {
          description: tiny.description,
          open: (path) => tiny.open(path),
          readText: async (path) => {
            const text = await tiny.readText(path);
            return path === 'model_index.json' && text ? JSON.stringify({ ...JSON.parse(text), force_zeros_for_empty_prompt: false }) : text;
          },
        };
        const pipeline = await SdxlTurboPipeline.load(await testGpu(), await ModelFolder.open(fs, { variant }), { dtype });
        try {
          const c = CASES.find((k) => k.negative_prompt === null)!;
          const guided = await pipeline.generate(options(c));
          const empty = await pipeline.generate({ ...options(c), prompt: '', guidanceScale: 0 });
          // The same encoder run on the same ids: equal bit for bit.
          expect(maxAbsDiff(guided.tensors!.get('negative_prompt_embeds')!.data, empty.tensors!.get('prompt_embeds')!.data)).toBe(0);
          expect(maxAbsDiff(guided.tensors!.get('negative_pooled_prompt_embeds')!.data, empty.tensors!.get('pooled_prompt_embeds')!.data)).toBe(0);
        } finally {
          await pipeline.dispose();
        }
      });
    }
  });
}

describe('the dry run of a guided generation (real configs, no GPU)', () => {
  const real = readConfigs(`${FIXTURES}sdxl-turbo-layout`);
  const run = { width: 512, height: 512, batch: 1, steps: 2, imageToImage: false };

  it('the same draws; the UNet on twice the batch; the text encoders twice for the negative prompt', async () => {
    const plain = await dryRun(real, shapeInput(real, run, 'f16'), { limits: UNBOUNDED });
    const guided = await dryRun(real, shapeInput(real, { ...run, guidance: true }, 'f16'), { limits: UNBOUNDED });
    expect(guided.draws).toEqual(plain.draws);
    const row = (d: typeof plain, network: string) => d.plan.find((r) => r.network === network)!;
    expect(row(guided, 'unet').calls).toBe(2);
    expect(row(guided, 'text_encoder').calls).toBe(2 * row(plain, 'text_encoder').calls);
    // Activations grow with the batch (the weights do not).
    expect(row(guided, 'unet').pooledBytes).toBeGreaterThan(1.5 * row(plain, 'unet').pooledBytes);
    expect(row(guided, 'unet').weightBytes).toBe(row(plain, 'unet').weightBytes);
  });

  it("the scheduler options decide the steps a run draws for (trailing's 61 steps are 62)", async () => {
    const tiny = readConfigs(TINY);
    const draws = async (timestepSpacing: 'leading' | 'trailing'): Promise<number> =>
      (await dryRun(tiny, shapeInput(tiny, { ...run, width: 64, height: 64, steps: 61, scheduler: { timestepSpacing } }, 'f32'), { limits: UNBOUNDED })).draws.length;
    expect(await draws('trailing')).toBe(1 + 62);
    expect(await draws('leading')).toBe(1 + 61);
  });
});

describe('bad guidance and scheduler options: UsageError naming the option', () => {
  const fails = (work: () => unknown, option: string, message: RegExp): void => {
    let error: unknown;
    try {
      work();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).option).toBe(option);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
  };

  it('guidanceScale must be a finite number ≥ 0', () => {
    for (const g of [-1, Number.NaN, Number.POSITIVE_INFINITY, '5' as unknown as number]) {
      fails(() => resolveGenerate({ prompt: 'x', guidanceScale: g }, false), 'guidanceScale', /^guidanceScale must be a finite number ≥ 0/);
    }
    expect(resolveGenerate({ prompt: 'x', guidanceScale: 0.5 }, false).guidance).toBe(false);
    expect(resolveGenerate({ prompt: 'x', guidanceScale: 1.5 }, false).guidance).toBe(true);
  });

  it('negativePrompt: a string for every prompt, or one per prompt', () => {
    expect(resolveGenerate({ prompt: ['a', 'b'], negativePrompt: 'n' }, false).negativePrompts).toEqual(['n', 'n']);
    expect(resolveGenerate({ prompt: ['a', 'b'], negativePrompt: ['n', 'm'] }, false).negativePrompts).toEqual(['n', 'm']);
    expect(resolveGenerate({ prompt: 'a' }, false).negativePrompts).toBeNull();
    fails(() => resolveGenerate({ prompt: ['a', 'b'], negativePrompt: ['n'] }, false), 'negativePrompt', /^negativePrompt has 1 prompts, expected one per prompt \(2\)/);
    fails(() => resolveGenerate({ prompt: 'a', negativePrompt: [1] as unknown as string[] }, false), 'negativePrompt', /^negativePrompt must be a string or an array of strings/);
  });

  it('scheduler and timestepSpacing: the values supported, checked before any GPU work', async () => {
    const folder = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp32' });
    try {
      await expect(prepareModel(folder, { scheduler: 'ddim' as 'euler' })).rejects.toMatchObject({ option: 'scheduler', message: 'scheduler must be euler, euler-a, got "ddim"' });
      await expect(prepareModel(folder, { timestepSpacing: 'karras' as 'leading' })).rejects.toMatchObject({ option: 'timestepSpacing', message: 'timestepSpacing must be leading, trailing, linspace, got "karras"' });
      expect((await prepareModel(folder, { scheduler: 'euler', timestepSpacing: 'leading' })).scheduler.config).toMatchObject({ scheduler: 'euler', timestepSpacing: 'leading' });
    } finally {
      await folder.close();
    }
  });
});
