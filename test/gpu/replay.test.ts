// Replay (src/gpu/replay.ts) on the tiny fixture's UNet and whole denoising steps (scheduler and
// UNet): a replayed forward gives exactly the eager forward's bits, makes no bind group and no
// buffer, and is recorded afresh when its key (shapes, other values) changes or when a buffer it
// binds is given up (weights reloaded); a load that names its run records the step at load, and
// a memory budget drops the replay before a stage that cannot hold it.

import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { replayBytes, replayForward } from '../../src/gpu/replay.js';
import { withDefaults } from '../../src/gpu/recording.js';
import { WebGpuRuntime } from '../../src/gpu/runtime.js';
import { ModelFolder } from '../../src/io/model-folder.js';
import { nodeModelFs, openFileReader } from '../../src/io/node-file.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { parseUNetConfig, UNet2DConditionModel, type UNetInputs } from '../../src/models/unet.js';
import { add } from '../../src/ops/binary.js';
import { uploadAs } from '../../src/ops/cast.js';
import { loadPipeline } from '../../src/index.js';
import { planBudget } from '../../src/pipeline/budget.js';
import { shapeInput, UNBOUNDED } from '../../src/pipeline/dry-run.js';
import { SdxlTurboPipeline } from '../../src/pipeline/sdxl-turbo.js';
import { type DType, Tensor } from '../../src/tensor.js';
import { readConfigs, TINY } from '../helpers/fixtures.js';
import { dtypes, randn, rng, testGpu } from '../helpers/gpu.js';

const config = parseUNetConfig(JSON.parse(readFileSync(`${TINY}/unet/config.json`, 'utf8')));
const WEIGHTS = `${TINY}/unet/diffusion_pytorch_model.safetensors`;

async function runtime(): Promise<WebGpuRuntime> {
  const gpu = await testGpu();
  if (!(gpu instanceof WebGpuRuntime)) throw new Error('testGpu() is not the WebGPU runtime');
  return gpu;
}

async function loadWeights(gpu: WebGpuRuntime, unet: UNet2DConditionModel, dtype: DType): Promise<void> {
  const source = await SafetensorsFile.open(await openFileReader(WEIGHTS));
  await unet.registry.load(gpu, source, dtype);
  await source.close();
}

/** Random inputs for a batch of `batch` at h × w, the timestep as the (B) tensor replays read. */
function inputs(gpu: WebGpuRuntime, seed: number, dtype: DType, t: number, [batch, h, w] = [2, 8, 12]): UNetInputs {
  const random = rng(seed);
  const up = (shape: number[]): Tensor => uploadAs(gpu, randn(random, shape.reduce((a, b) => a * b)), 'f32', shape, dtype);
  return {
    sample: up([batch, 4, h, w]),
    timestep: Tensor.upload(gpu, new Float32Array(batch).fill(t), 'f32', [batch], 'f32'),
    encoderHiddenStates: up([batch, 77, config.crossAttentionDim]),
    textEmbeds: up([batch, config.textEmbedsDim]),
    timeIds: Array.from({ length: batch }, () => [8 * h, 8 * w, 0, 0, 8 * h, 8 * w]).flat(),
  };
}

const release = (x: UNetInputs): void => [x.sample, x.timestep as Tensor, x.encoderHiddenStates, x.textEmbeds].forEach((t) => t.release());

/** The output's raw bits: replay must equal eager exactly, not within a tolerance. */
async function bits(t: Tensor): Promise<Uint32Array> {
  const raw = await t.gpu.read(t.buffer, 0, t.byteLength);
  t.release();
  return new Uint32Array(raw.slice(0, Math.floor(raw.byteLength / 4) * 4));
}

describe('replayed forwards', () => {
  it('a replayed UNet forward equals the eager one bit for bit, in each dtype, and creates no bind group and no buffer', async () => {
    const gpu = await runtime();
    for (const dtype of await dtypes()) {
      const unet = UNet2DConditionModel.create(config);
      await loadWeights(gpu, unet, dtype);
      const forward = (x: UNetInputs): Tensor => replayForward(gpu, unet, x, (y) => unet.forward(y));
      // Eager once first, so the pool is warm and the model's lazily made tables exist.
      const a = inputs(gpu, 1, dtype, 999);
      const eagerBindGroups = gpu.created.bindGroups;
      const eagerA = await bits(unet.forward(a));
      const dispatches = gpu.created.bindGroups - eagerBindGroups;

      // First call: recorded while it runs; its output is the eager one's.
      expect(await bits(forward(a)), `${dtype}: recording run`).toEqual(eagerA);
      // Later calls with other values (and another timestep) in the same shapes: replayed.
      for (const [seed, t] of [[2, 499], [3, 1]] as const) {
        const x = inputs(gpu, seed, dtype, t);
        const eager = await bits(unet.forward(x));
        const before = { ...gpu.created };
        const replayed = forward(x);
        expect(gpu.created, `${dtype}: a replayed forward (of ${dispatches} dispatches eager) creates nothing`).toEqual(before);
        expect(await bits(replayed), `${dtype}: replay of seed ${seed}, t = ${t}`).toEqual(eager);
        expect(eager).not.toEqual(eagerA); // the inputs reached the replay: its output moved
        release(x);
      }
      release(a);
      unet.registry.release();
      await gpu.sync();
    }
  });

  it('records afresh for other shapes or other time ids, and after the weights it binds are reloaded', async () => {
    const gpu = await runtime();
    const unet = UNet2DConditionModel.create(config);
    await loadWeights(gpu, unet, 'f32');
    const forward = (x: UNetInputs): Tensor => replayForward(gpu, unet, x, (y) => unet.forward(y));
    const check = async (x: UNetInputs, recorded: boolean, what: string): Promise<void> => {
      const eager = await bits(unet.forward(x));
      const before = gpu.created.bindGroups;
      const out = forward(x);
      expect(gpu.created.bindGroups > before, `${what}: ${recorded ? 'recorded' : 'replayed'}`).toBe(recorded);
      expect(await bits(out), what).toEqual(eager);
    };
    const x = inputs(gpu, 4, 'f32', 999);
    await check(x, true, 'first call');
    await check(x, false, 'same shapes');
    const single = inputs(gpu, 5, 'f32', 999, [1, 8, 8]);
    await check(single, true, 'another batch and size');
    await check(x, true, 'back to the first shapes (one replay per model)');
    await check({ ...x, timeIds: Array.from(x.timeIds, (v, i) => (i === 2 ? 16 : v)) }, true, 'other time ids');
    // New weight buffers (as setLoras reloads them): the replay must not bind the freed ones.
    // Releasing the weights drops it, and its buffers with it.
    expect(replayBytes(gpu)).toBeGreaterThan(0);
    unet.registry.release();
    expect(replayBytes(gpu)).toBe(0);
    await loadWeights(gpu, unet, 'f32');
    await check(x, true, 'weights reloaded');
    await check(x, false, 'weights reloaded, second call');
    release(x);
    release(single);
    unet.registry.release();
    await gpu.sync();
  });

  it('records a replayed forward nested in another into the outer one, and replays the outer one exactly', async () => {
    const gpu = await runtime();
    const [inner, outer] = [{}, {}];
    const twice = (x: Tensor): Tensor => replayForward(gpu, inner, { x }, ({ x }) => add(x, x));
    const forward = (x: Tensor, y: Tensor): Tensor => replayForward(gpu, outer, { x, y }, ({ x, y }) => add(twice(x), y));
    const random = rng(11);
    for (const run of [0, 1, 2]) {
      const [xs, ys] = [randn(random, 300), randn(random, 300)];
      const [x, y] = [xs, ys].map((data) => Tensor.upload(gpu, data, 'f32', [300], 'f32')) as [Tensor, Tensor];
      const before = gpu.created.bindGroups;
      const out = forward(x, y);
      expect(gpu.created.bindGroups > before, `run ${run}: recorded only the first time`).toBe(run === 0);
      // x + x is exact in f32, so (x + x) + y is one rounding: the float64 sum rounded once.
      expect(Array.from(await out.read()), `run ${run}`).toEqual(Array.from(xs, (v, k) => Math.fround(2 * v + ys[k]!)));
      [x, y, out].forEach((t) => t.release());
    }
  });

  it('a generation whose steps (scheduler and UNet) are recorded and replayed gives the eager generation\'s bits, and its replayed steps create no bind group and no buffer', async () => {
    const gpu = await runtime();
    const dtype = gpu.f16 ? 'f16' : 'f32';
    const folder = await ModelFolder.open(nodeModelFs(TINY), { variant: dtype === 'f16' ? 'fp16' : 'fp32' });
    const pipeline = await SdxlTurboPipeline.load(gpu, folder, { dtype });
    try {
      const created: Array<typeof gpu.created> = [];
      const run = async (replay: boolean, seed: number, extra: object): Promise<Uint32Array> => {
        gpu.replayForwards = replay;
        created.length = 0;
        const options = { prompt: 'a photo of a cat', steps: 3, seed, width: 64, height: 96, returnTensors: true, ...extra };
        const result = await pipeline.generate({ ...options, onProgress: (e) => e.stage === 'denoise' && created.push({ ...gpu.created }) });
        return new Uint32Array(result.tensors!.get('final_latents')!.data.buffer);
      };
      try {
        // Guided: the doubled batch and the guidance arithmetic in the step (another key: recorded afresh).
        for (const [name, extra] of [['unguided', {}], ['guided', { guidanceScale: 2, negativePrompt: 'blurry' }]] as const) {
          const eager = await run(false, 5, extra);
          expect(await run(true, 5, extra), `${name}: recorded at step 1, replayed at steps 2 and 3`).toEqual(eager);
          expect(await run(true, 6, extra), `${name}: another seed: the inputs reach the replay`).not.toEqual(eager);
          expect(await run(true, 5, extra), `${name}: a later run, every step replayed`).toEqual(eager);
          // Steps 2 and 3 of that run, scheduler and UNet together: no buffer, no bind group.
          const perStep = created.slice(1).map((c, i) => ({ buffers: c.buffers - created[i]!.buffers, bindGroups: c.bindGroups - created[i]!.bindGroups }));
          expect(perStep, name).toEqual([{ buffers: 0, bindGroups: 0 }, { buffers: 0, bindGroups: 0 }]);
          // Another prompt: the held prompt tensors of the new generation reach the replay.
          const other = { ...extra, prompt: 'a red bicycle' };
          expect(await run(true, 5, other), `${name}: another prompt`).toEqual(await run(false, 5, other));
        }
      } finally {
        gpu.replayForwards = true;
      }
    } finally {
      await pipeline.dispose();
    }
  });

  it('a load asked to warm up records the named run\'s step at load; under a budget the replay is dropped before a stage that cannot hold it beside the plan', async () => {
    const size = { width: 64, height: 64, steps: 2 };
    const shape = { ...size, batch: 1, imageToImage: false };
    const tiny = readConfigs(TINY);
    const { choice: unbounded } = await planBudget(tiny, shapeInput(tiny, shape, 'f32'), { limits: withDefaults(UNBOUNDED) }, Number.MAX_SAFE_INTEGER);
    // Each run's first step: the prompts' cross-attention k|v (made eagerly each run), and the
    // step's recording where the replay was dropped.
    const firstSteps: Array<{ keeps: boolean; bindGroups: number }> = [];
    // At the plan's peak some stage has no room for the replay beside it; at ten times it, all do.
    for (const [maxMemory, keeps] of [[unbounded.peak, false], [10 * unbounded.peak, true]] as const) {
      const pipeline = await loadPipeline(TINY, { variant: 'fp32', dtype: 'f32', preflight: size, maxMemory, warmUp: true });
      try {
        const gpu = pipeline.gpu;
        if (!(gpu instanceof WebGpuRuntime)) throw new Error('loadPipeline() did not open the WebGPU runtime');
        const { choice } = await planBudget(tiny, shapeInput(tiny, shape, 'f32'), { limits: gpu.limits, f16: gpu.f16, subgroups: gpu.subgroups }, maxMemory);
        const stageBytes = new Map(choice.stages.map((st) => [st.stage as string, st.bytes]));
        for (const run of [0, 1]) {
          const starts: Array<{ stage: string; replay: number }> = [];
          const created: Array<typeof gpu.created> = [];
          await pipeline.generate({
            prompt: 'a photo of a cat',
            seed: 5,
            ...size,
            onProgress: (e) => {
              if (e.done === 0) starts.push({ stage: e.stage, replay: replayBytes(gpu) });
              if (e.stage === 'denoise' || (e.stage === 'encode-prompt' && e.done === e.total)) created.push({ ...gpu.created });
            },
          });
          const what = `maxMemory ${maxMemory}, run ${run}`;
          // Every stage starts with its planned bytes and the replay's within the budget.
          for (const st of starts) expect(stageBytes.get(st.stage)! + st.replay, `${what}: ${st.stage}`).toBeLessThanOrEqual(maxMemory);
          const decode = starts.find((st) => st.stage === 'decode')!;
          // Per step (the first with the prompts' cross-attention k|v, made eagerly each run).
          const perStep = created.slice(1).map((c, i) => ({ buffers: c.buffers - created[i]!.buffers, bindGroups: c.bindGroups - created[i]!.bindGroups }));
          firstSteps.push({ keeps, bindGroups: perStep[0]!.bindGroups });
          // The second step replays in any case: nothing new.
          expect(perStep[1], what).toEqual({ buffers: 0, bindGroups: 0 });
          if (keeps) {
            // Recorded by load's warm-up run (an empty prompt, the same shapes), held throughout.
            expect(starts.every((st) => st.replay > 0), what).toBe(true);
          } else {
            expect(decode.replay, `${what}: dropped before the decode`).toBe(0);
          }
        }
      } finally {
        await pipeline.dispose();
      }
    }
    const [dropped, kept] = [false, true].map((k) => firstSteps.filter((f) => f.keeps === k).map((f) => f.bindGroups));
    // Kept: the first step of every run, the first after load included, replays as the next does.
    expect(kept[0]).toBe(kept[1]);
    // Dropped: recorded afresh, one bind group per dispatch of the step beyond that.
    for (const n of dropped!) expect(n).toBeGreaterThan(kept[0]! + 100);
  });

  it('takes tensors inside objects and Maps as inputs (a prepared cross-attention context), a tensor met twice copied once', async () => {
    const gpu = await runtime();
    /** As the UNet's cross-attention context: k|v per attention module, and the states they came from. */
    class Context {
      readonly kvs = new Map<object, Tensor>();
      constructor(readonly states: Tensor) {}
    }
    const [owner, module] = [{}, {}];
    const random = rng(12);
    for (const run of [0, 1, 2]) {
      const [xs, kvs] = [randn(random, 64), randn(random, 64)];
      const x = Tensor.upload(gpu, xs, 'f32', [64], 'f32');
      const context = new Context(x);
      context.kvs.set(module, Tensor.upload(gpu, kvs, 'f32', [64], 'f32'));
      const before = gpu.created.bindGroups;
      const out = replayForward(gpu, owner, { x, context }, ({ x, context }) => {
        if (!(context instanceof Context) || context.states !== x) throw new Error('the context was not rebuilt around the same copy of x');
        return add(x, context.kvs.get(module)!);
      });
      expect(gpu.created.bindGroups > before, `run ${run}: recorded only the first time, though each run brings a new context`).toBe(run === 0);
      // One f32 addition: the float64 sum rounded once.
      expect(Array.from(await out.read()), `run ${run}`).toEqual(Array.from(xs, (v, k) => Math.fround(v + kvs[k]!)));
      [x, context.kvs.get(module)!, out].forEach((t) => t.release());
    }
  });

  it('copies a held input in only when another tensor takes its place, every other input at every call', async () => {
    const gpu = await runtime();
    const owner = {};
    const random = rng(13);
    const upload = (data: Float32Array): Tensor => Tensor.upload(gpu, data, 'f32', [64], 'f32');
    // x: one tensor rewritten before each call, as a step's noise is; h: held, replaced once.
    const x = upload(new Float32Array(64));
    let hs = randn(random, 64);
    let h = upload(hs);
    const copy = vi.spyOn(gpu, 'copy');
    try {
      for (const call of [0, 1, 2, 3]) {
        const xs = randn(random, 64);
        gpu.write(x.buffer, xs);
        if (call === 2) {
          h.release();
          hs = randn(random, 64);
          h = upload(hs);
        }
        copy.mockClear();
        const out = replayForward(gpu, owner, { x, h }, ({ x, h }) => add(x, h), [h]);
        const sources = copy.mock.calls.map((c) => c[0]);
        expect(sources, `call ${call}: x`).toContain(x.buffer);
        expect(sources.includes(h.buffer), `call ${call}: h copied when recorded and when replaced`).toBe(call === 0 || call === 2);
        // One f32 addition: the float64 sum rounded once.
        expect(Array.from(await out.read()), `call ${call}`).toEqual(Array.from(xs, (v, k) => Math.fround(v + hs[k]!)));
        out.release();
      }
    } finally {
      copy.mockRestore();
      [x, h].forEach((t) => t.release());
    }
  });

  it('refuses a read back inside a forward being recorded, and leaves nothing behind', async () => {
    const gpu = await runtime();
    const live = gpu.pool.stats.liveBytes;
    const created = gpu.created.buffers;
    const x = Tensor.upload(gpu, new Float32Array([1, 2, 3, 4]), 'f32', [4], 'f32');
    const owner = {};
    expect(() =>
      replayForward(gpu, owner, { x }, ({ x }) => {
        void x.read();
        return x;
      }),
    ).toThrow(/recorded for replay cannot read back/);
    x.release();
    expect(gpu.pool.stats.liveBytes).toBe(live);
    expect(gpu.created.buffers).toBeGreaterThan(created); // the recording's input copy, since freed
    await gpu.sync();
  });
});
