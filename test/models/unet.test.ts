// Parity of the UNet with diffusers on the tiny fixture: case0 (batch 1, 8×8, t = 999) with
// every hooked intermediate, case1 (batch 2, 8×12, t = 499) output, for fp32 weights in f32,
// fp16 weights in f32 and fp16 weights in f16. The reference was computed from the fp32 weights.

import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { openFileReader } from '../../src/io/node-file.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { parseUNetConfig, UNet2DConditionModel, type UNetInputs } from '../../src/models/unet.js';
import { cast, uploadAs } from '../../src/ops/cast.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { readReference, ref, type RefTensor, TINY, TINY_REF } from '../helpers/fixtures.js';
import { randn, relL2, rng, testGpu } from '../helpers/gpu.js';
import { poisonPool } from '../helpers/poison.js';

const config = parseUNetConfig(JSON.parse(readFileSync(`${TINY}/unet/config.json`, 'utf8')));

/** The fixture's hooks in execution order. */
const HOOKS = [
  'time_proj', 'time_embedding', 'add_time_proj', 'add_embedding', 'conv_in',
  'down_blocks.0', 'down_blocks.1', 'down_blocks.2', 'mid_block',
  'up_blocks.0', 'up_blocks.1', 'up_blocks.2', 'conv_norm_out', 'conv_out',
];

// Largest activation of either case: the level-0 up-block concat, (2, 48, 8, 12) f32 = 36 KiB.
const POISON_BYTES = 64 * 1024;

let reference: Map<string, RefTensor>;
beforeAll(async () => {
  reference = await readReference(`${TINY_REF}/unet.safetensors`);
});

interface Run {
  readonly weights: 'diffusion_pytorch_model.safetensors' | 'diffusion_pytorch_model.fp16.safetensors';
  readonly dtype: DType;
  /** Relative-L2 bound for every hook and output, and why. */
  readonly tolerance: number;
  readonly why: string;
}

const RUNS: Run[] = [
  {
    weights: 'diffusion_pytorch_model.safetensors',
    dtype: 'f32',
    tolerance: 1e-5,
    why: 'same weights, f32 math: only summation order differs from torch (observed ≤1e-6)',
  },
  {
    weights: 'diffusion_pytorch_model.fp16.safetensors',
    dtype: 'f32',
    tolerance: 2e-3,
    why: 'f16-rounded weights (rel. 2^-11 each) against an fp32-weight reference; f32 math (observed ≤7e-4)',
  },
  {
    weights: 'diffusion_pytorch_model.fp16.safetensors',
    dtype: 'f16',
    tolerance: 5e-3,
    why: 'f16 weights and activations (rel. 2^-11 per rounding), f32 accumulation, ~25 layers deep (observed ≤1.5e-3)',
  },
];

/** The case's inputs from the reference file, uploaded in `dtype`. */
function inputs(gpu: Awaited<ReturnType<typeof testGpu>>, which: 'case0' | 'case1', dtype: DType): UNetInputs {
  const upload = (name: string): Tensor => {
    const t = ref(reference, `${which}.${name}`);
    return uploadAs(gpu, t.data, 'f32', t.shape, dtype, { label: name });
  };
  return {
    sample: upload('sample'),
    timestep: ref(reference, `${which}.timestep`).data[0]!,
    encoderHiddenStates: upload('encoder_hidden_states'),
    textEmbeds: upload('text_embeds'),
    timeIds: ref(reference, `${which}.time_ids`).data,
  };
}

const releaseInputs = (x: UNetInputs): void => [x.sample, x.encoderHiddenStates, x.textEmbeds].forEach((t) => t.release());

async function loadUNet(gpu: Awaited<ReturnType<typeof testGpu>>, weights: Run['weights'], dtype: DType): Promise<UNet2DConditionModel> {
  const unet = UNet2DConditionModel.create(config);
  const source = await SafetensorsFile.open(await openFileReader(`${TINY}/unet/${weights}`));
  await unet.registry.load(gpu, source, dtype);
  await source.close();
  return unet;
}

describe('UNet2DConditionModel on the tiny fixture', () => {
  for (const run of RUNS) {
    it(`${run.weights} in ${run.dtype}: hooks and outputs match diffusers (${run.why})`, async (ctx) => {
      const gpu = await testGpu();
      if (run.dtype === 'f16' && !gpu.f16) ctx.skip();
      const unet = await loadUNet(gpu, run.weights, run.dtype);
      const errors = new Map<string, number>();

      // case0: every hook, in order, each observed once.
      const live = gpu.pool.stats.liveBytes;
      poisonPool(gpu, POISON_BYTES);
      const x0 = inputs(gpu, 'case0', run.dtype);
      const seen: string[] = [];
      const reads: Array<Promise<Float32Array>> = [];
      const out0 = unet.forward(x0, (name, t) => {
        seen.push(name);
        expect(t.dtype).toBe(run.dtype);
        expect(t.shape, name).toEqual(ref(reference, `case0.hook.${name}`).shape);
        reads.push(t.read());
      });
      expect(seen).toEqual(HOOKS);
      const hooked = await Promise.all(reads);
      HOOKS.forEach((name, i) => errors.set(name, relL2(hooked[i]!, ref(reference, `case0.hook.${name}`).data)));
      expect(out0.shape).toEqual([1, 4, 8, 8]);
      errors.set('case0 out', relL2(await out0.read(), ref(reference, 'case0.out').data));
      out0.release();
      releaseInputs(x0);
      // Every intermediate, the skip stack included, went back to the pool.
      expect(gpu.pool.stats.liveBytes).toBe(live);

      // case1: batch 2 with different prompts, a non-square latent, t = 499.
      poisonPool(gpu, POISON_BYTES);
      const x1 = inputs(gpu, 'case1', run.dtype);
      const out1 = unet.forward(x1);
      expect(out1.shape).toEqual([2, 4, 8, 12]);
      errors.set('case1 out', relL2(await out1.read(), ref(reference, 'case1.out').data));
      out1.release();
      releaseInputs(x1);
      expect(gpu.pool.stats.liveBytes).toBe(live);

      console.log(`${run.weights} / ${run.dtype}: relative L2\n${[...errors]
        .map(([k, e]) => `  ${k.padEnd(15)} ${e.toExponential(2)}`)
        .join('\n')}`);
      for (const [name, e] of errors) expect(e, `${name} (${run.why})`).toBeLessThan(run.tolerance);
      unet.registry.release();
      await gpu.sync();
    });
  }

  it('takes a latent that is not a multiple of 4: 9×10 rounds up to 5×5 and 3×3 on the way down and meets each skip on the way up', async () => {
    // No diffusers reference at this size (the 8×8 and 8×12 cases above check the numbers); this
    // checks what only odd sides exercise: every level's shape, and no element left unwritten
    // (the pool is NaN-poisoned) or read out of bounds.
    const gpu = await testGpu();
    const unet = await loadUNet(gpu, 'diffusion_pytorch_model.safetensors', 'f32');
    const live = gpu.pool.stats.liveBytes;
    poisonPool(gpu, POISON_BYTES);
    const case0 = inputs(gpu, 'case0', 'f32');
    case0.sample.release();
    const x = { ...case0, sample: Tensor.upload(gpu, randn(rng(910), 4 * 9 * 10), 'f32', [1, 4, 9, 10], 'f32') };
    const shapes = new Map<string, readonly number[]>();
    const out = unet.forward(x, (name, t) => shapes.set(name, t.shape));
    expect(Object.fromEntries([...shapes].filter(([name]) => /block|conv_(in|out)/.test(name)))).toEqual({
      conv_in: [1, 16, 9, 10],
      'down_blocks.0': [1, 16, 5, 5],
      'down_blocks.1': [1, 32, 3, 3],
      'down_blocks.2': [1, 48, 3, 3],
      'mid_block': [1, 48, 3, 3],
      'up_blocks.0': [1, 48, 5, 5],
      'up_blocks.1': [1, 32, 9, 10],
      'up_blocks.2': [1, 16, 9, 10],
      conv_out: [1, 4, 9, 10],
    });
    expect(out.shape).toEqual([1, 4, 9, 10]);
    const values = await out.read();
    expect(values.every(Number.isFinite)).toBe(true);
    out.release();
    releaseInputs(x);
    expect(gpu.pool.stats.liveBytes).toBe(live);
    unet.registry.release();
    await gpu.sync();
  });

  it('leaves no activation behind when a hook throws mid-forward (skips on the stack, some taken)', async () => {
    const gpu = await testGpu();
    const unet = await loadUNet(gpu, 'diffusion_pytorch_model.safetensors', 'f32');
    const x = inputs(gpu, 'case0', 'f32');
    const live = gpu.pool.stats.liveBytes;
    for (const stop of ['add_embedding', 'down_blocks.1', 'up_blocks.1', 'conv_norm_out']) {
      const hook = (name: string): void => {
        if (name === stop) throw new Error(`stopped at ${name}`);
      };
      expect(() => unet.forward(x, hook)).toThrow(`stopped at ${stop}`);
      expect(gpu.pool.stats.liveBytes, stop).toBe(live);
    }
    expect(x.sample.released || x.encoderHiddenStates.released || x.textEmbeds.released).toBe(false);
    releaseInputs(x);
    unet.registry.release();
    await gpu.sync();
  });

  it('a context prepared once gives every forward the output of an unprepared forward, bit for bit, and is released by its holder', async () => {
    const gpu = await testGpu();
    const unet = await loadUNet(gpu, 'diffusion_pytorch_model.safetensors', 'f32');
    const x = inputs(gpu, 'case0', 'f32');
    const plain = unet.forward(x);
    const want = await plain.read();
    plain.release();
    const live = gpu.pool.stats.liveBytes;
    const context = unet.prepareContext(x.encoderHiddenStates);
    // Its k|v tensors stay live (pooled: each in its size class) until released.
    expect(gpu.pool.stats.liveBytes - live).toBeGreaterThanOrEqual(context.byteLength);
    for (let step = 0; step < 2; step++) {
      const out = unet.forward({ ...x, context });
      expect(await out.read(), `forward ${step}`).toEqual(want);
      out.release();
    }
    // A context made from other prompt embeddings is refused, not silently used.
    const other = Tensor.upload(gpu, await x.encoderHiddenStates.read(), 'f32', x.encoderHiddenStates.shape, 'f32');
    expect(() => unet.forward({ ...x, encoderHiddenStates: other, context })).toThrow(/context was prepared from another encoderHiddenStates tensor/);
    other.release();
    context.release();
    expect(gpu.pool.stats.liveBytes).toBe(live);
    expect(() => unet.prepareContext(x.textEmbeds)).toThrow(/prepareContext: encoderHiddenStates is \(1, \d+\) f32, expected \(B, S, 56\) f32/);
    releaseInputs(x);
    unet.registry.release();
    await gpu.sync();
  });

  it('rejects inputs of the wrong shape or dtype with every problem named', async () => {
    const gpu = await testGpu();
    const unet = await loadUNet(gpu, 'diffusion_pytorch_model.safetensors', 'f32');
    const good = inputs(gpu, 'case0', 'f32');
    const odd = Tensor.empty(gpu, [1, 3, 6, 8], 'f32');
    expect(() => unet.forward({ ...good, sample: odd, timeIds: [64, 64, 0, 0, 64] })).toThrow(
      /sample is \(1, 3, 6, 8\), expected \(B, 4, h, w\); timeIds has 5 values, expected 6/,
    );
    const steps = Tensor.empty(gpu, [2], 'f32');
    expect(() => unet.forward({ ...good, timestep: steps })).toThrow(/timestep is f32 \(2\), expected \(1\) f32/);
    steps.release();
    const wide = Tensor.empty(gpu, [1, 77, 57], 'f32');
    expect(() => unet.forward({ ...good, encoderHiddenStates: wide })).toThrow(/encoderHiddenStates is \(1, 77, 57\), expected \(1, S, 56\)/);
    if (gpu.f16) {
      const half = cast(good.textEmbeds, 'f16');
      expect(() => unet.forward({ ...good, textEmbeds: half })).toThrow(/textEmbeds is f16 but the weights are f32/);
      half.release();
    }
    for (const t of [odd, wide]) t.release();
    releaseInputs(good);
    unet.registry.release();
    await gpu.sync();
  });
});
