// The library's lifecycle through loadPipeline on the tiny fixture: what it refuses before the
// GPU opens (options, weight tables), typed errors in the API's option names, aborts rejecting
// with the signal's reason, one progress stream in bytes across all four networks, the
// library's image-to-image defaults, and generate() after dispose(). One device for the file:
// openNodeGpu hands out the same device each time, whose dispose() only counts.

import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Gpu, WebGpuRuntime } from '../../src/gpu/runtime.js';
import { UsageError } from '../../src/errors.js';
import { nodeModelFs } from '../../src/io/node-file.js';
import { type ModelComponent, ModelFolder } from '../../src/io/model-folder.js';
import type { TensorSource } from '../../src/io/tensor-source.js';
import { Tensor } from '../../src/tensor.js';
import { loadPipeline, type ProgressEvent } from '../../src/index.js';
import { SdxlTurboPipeline } from '../../src/pipeline/sdxl-turbo.js';
import { TINY } from '../helpers/fixtures.js';
import { rng } from '../helpers/gpu.js';

const device = vi.hoisted(() => ({ opened: 0, disposed: 0, real: null as Promise<Gpu> | null }));
vi.mock('../../src/gpu/node.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/gpu/node.js')>();
  return {
    openNodeGpu: async () => {
      device.opened++;
      device.real ??= real.openNodeGpu({ allowF16: false });
      const countDispose = (): void => void device.disposed++;
      return new Proxy(await device.real, { get: (gpu, key) => (key === 'dispose' ? countDispose : Reflect.get(gpu, key)) });
    },
  };
});
afterAll(async () => (await device.real)?.dispose());
const openDevice = async (): Promise<Gpu> => (await import('../../src/gpu/node.js')).openNodeGpu();

const F32 = { variant: 'fp32', dtype: 'f32' } as const;

/** The rejection of `work` (fails the test if it resolves). */
async function rejection(work: Promise<unknown>): Promise<unknown> {
  return work.then(
    () => expect.fail('resolved'),
    (e: unknown) => e,
  );
}

describe('before the GPU opens', () => {
  it('bad preflight options are UsageErrors naming the API option, with nothing opened', async () => {
    const cases: Array<[object, string, string]> = [
      [{ width: 100 }, 'width', 'width must be a multiple of 8, got 100'],
      [{ steps: 0 }, 'steps', 'steps must be an integer in [1, 1000], got 0'],
      [{ imagesPerPrompt: 65 }, 'imagesPerPrompt', 'imagesPerPrompt must be an integer in [1, 64], got 65'],
      [{ strength: 0.5 }, 'strength', 'strength needs image (image-to-image)'],
      [{ image: { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) }, strength: 0.4, steps: 2 }, 'steps', 'steps 2 × strength 0.4'],
      [{ inputs: new Map([['initial_latents', new Float32Array(3)]]), width: 64, height: 64 }, 'inputs', 'inputs: initial_latents has 3 values, expected 256'],
    ];
    for (const [preflight, option, message] of cases) {
      const error = await rejection(loadPipeline(TINY, { ...F32, preflight }));
      expect(error, message).toBeInstanceOf(UsageError);
      expect((error as UsageError).option, message).toBe(option);
      expect((error as Error).message, message).toContain(message);
      // No flag syntax in a library message.
      expect((error as Error).message).not.toContain('--');
    }
    expect(device.opened).toBe(0);
  });

  it('a missing source and an already aborted signal', async () => {
    const missing = await rejection(loadPipeline('/no/such/model-folder'));
    expect(missing).toBeInstanceOf(UsageError);
    expect((missing as UsageError).option).toBe('model');
    const reason = new Error('the user left');
    expect(await rejection(loadPipeline(TINY, { signal: AbortSignal.abort(reason) }))).toBe(reason);
    const plain = await rejection(loadPipeline(TINY, { signal: AbortSignal.abort() }));
    // As fetch rejects: a DOMException named AbortError.
    expect(plain).toBeInstanceOf(DOMException);
    expect((plain as DOMException).name).toBe('AbortError');
    expect(device.opened).toBe(0);
  });
});

describe('on the GPU', () => {
  let pipeline: Awaited<ReturnType<typeof loadPipeline>> | null = null;
  afterAll(async () => pipeline?.dispose());

  it('an abort while the weights load rejects with its reason and disposes the device', async () => {
    const controller = new AbortController();
    const reason = new Error('stop loading');
    const load = loadPipeline(TINY, { ...F32, signal: controller.signal, onProgress: (e) => e.stage === 'load' && e.done > 0 && controller.abort(reason) });
    expect(await rejection(load)).toBe(reason);
    expect([device.opened, device.disposed]).toEqual([1, 1]);
  });

  it('a pipeline loaded onto a device it does not own leaves the device open', async () => {
    const folder = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp32' });
    const own = await SdxlTurboPipeline.load(await openDevice(), folder, { dtype: 'f32' });
    await own.dispose();
    expect([device.opened, device.disposed]).toEqual([2, 1]);
  });

  it('loads with one progress stream: bytes of all four networks, component by component', async () => {
    const events: ProgressEvent[] = [];
    pipeline = await loadPipeline(TINY, { ...F32, preflight: { width: 64, height: 64 }, onProgress: (e) => events.push(e) });
    expect(device.opened).toBe(3);
    const loads = events.filter((e) => e.stage === 'load');
    // Then the run's pipelines compile (none left to compile where an earlier load on this
    // shared device compiled them): 'compile' events, after every 'load' one.
    const compiles = events.filter((e) => e.stage === 'compile');
    expect(loads.length + compiles.length).toBe(events.length);
    expect(events.slice(loads.length).every((e) => e.stage === 'compile')).toBe(true);
    expect(compiles.every((e, i) => e.done === i + 1 && e.total === compiles.length)).toBe(true);
    expect([...new Set(loads.map((e) => (e.stage === 'load' ? e.component : null)))]).toEqual(['text_encoder', 'text_encoder_2', 'unet', 'vae']);
    const total = loads[0]!.total;
    // fp32 files: 4 bytes per value of every tensor the four networks read.
    const folder = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp32' });
    const fileBytes = (['text_encoder', 'text_encoder_2', 'unet', 'vae'] as const)
      .flatMap((c) => [...folder.weights(c).entries.values()].filter((e) => !e.name.endsWith('position_ids')))
      .reduce((sum, e) => sum + 4 * e.shape.reduce((a, b) => a * b, 1), 0);
    await folder.close();
    expect(total).toBe(fileBytes);
    expect(loads.every((e, i) => e.total === total && (i === 0 || e.done >= loads[i - 1]!.done))).toBe(true);
    expect(loads.at(-1)!.done).toBe(total);
    // The preflight's memory plan is in describe() (what --verbose prints).
    expect(pipeline.describe().join('\n')).toContain('GPU memory plan: 64×64');
    // Load compiled every pipeline of the preflight's run: generating it creates none, neither
    // synchronously at a dispatch nor by generate()'s own compile of a new shape.
    const { pipelines } = pipeline.gpu as WebGpuRuntime;
    const [created, compiled] = [pipelines.createdSync, pipelines.size];
    await pipeline.generate({ prompt: 'a cat', width: 64, height: 64, seed: 1 });
    expect([pipelines.createdSync, pipelines.size]).toEqual([created, compiled]);
  });

  it("imageToImage({ prompt, image }) works with the library's defaults: the fewest steps that keep one at strength 0.5", async () => {
    const random = rng(8);
    const image = { width: 64, height: 64, data: Uint8Array.from({ length: 64 * 64 * 3 }, () => Math.floor(256 * random())) };
    const result = await pipeline!.imageToImage({ prompt: 'a boat', image, seed: 3 });
    const out = result.images[0]!;
    expect(out.parameters).toMatchObject({ prompt: 'a boat', seed: 3, steps: 2, strength: 0.5, width: 64, height: 64, model: TINY });
    // A result is a valid image-to-image input as it is.
    const again = await pipeline!.imageToImage({ prompt: 'a boat', image: out, seed: 3, steps: 1, strength: 1 });
    expect(again.images[0]!.parameters.steps).toBe(1);
  });

  it('an abort while generating rejects with its reason; generate() after dispose() says so', async () => {
    const controller = new AbortController();
    const reason = new Error('enough');
    const run = pipeline!.generate({ prompt: 'x', width: 64, height: 64, signal: controller.signal, onProgress: () => controller.abort(reason) });
    expect(await rejection(run)).toBe(reason);
    await pipeline!.dispose();
    await pipeline!.dispose(); // a second dispose does nothing
    expect(device.disposed).toBe(2);
    const error = await rejection(pipeline!.generate({ prompt: 'x' }));
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toBe("generate() after dispose(): this pipeline's GPU memory is freed; load another with loadPipeline()");
    pipeline = null;
  });
});

describe('weights a source makes on the GPU (TensorSource.create)', () => {
  it('are made, not read, and counted in the same progress stream', async () => {
    const files = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp32' });
    const made: string[] = [];
    const onDevice = (component: ModelComponent): TensorSource => {
      const source = files.weights(component);
      return {
        description: source.description,
        entries: source.entries,
        read: (name) => Promise.reject(new Error(`read ${name}`)),
        create: (gpu, name, dtype, label) => {
          made.push(name);
          return Tensor.empty(gpu, source.entries.get(name)!.shape, dtype, label, true);
        },
      };
    };
    const components = ['text_encoder', 'text_encoder_2', 'unet', 'vae'] as const;
    const folder = await ModelFolder.open(nodeModelFs(TINY), { weights: Object.fromEntries(components.map((c) => [c, onDevice(c)])) });
    const events: ProgressEvent[] = [];
    const pipeline = await SdxlTurboPipeline.load(await openDevice(), folder, { dtype: 'f32', onProgress: (e) => events.push(e) });
    const declared = components.flatMap((c) => [...files.weights(c).entries.keys()].filter((n) => !n.endsWith('position_ids')));
    expect(made.sort()).toEqual(declared.sort());
    const loads = events.filter((e) => e.stage === 'load');
    const total = loads[0]!.total;
    // fp32 files: 4 bytes per value, as read() would have given them.
    const fileBytes = components
      .flatMap((c) => [...files.weights(c).entries.values()].filter((e) => !e.name.endsWith('position_ids')))
      .reduce((sum, e) => sum + 4 * e.shape.reduce((a, b) => a * b, 1), 0);
    expect(total).toBe(fileBytes);
    expect(loads.every((e, i) => e.total === total && (i === 0 || e.done >= loads[i - 1]!.done))).toBe(true);
    expect(loads.at(-1)!.done).toBe(total);
    await pipeline.dispose();
    await files.close();
  });
});
