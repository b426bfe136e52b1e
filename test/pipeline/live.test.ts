// Live sessions on the tiny fixture: frames equal one-shot runs of their request, a newer
// request cancels the running frame at a stage boundary (or lets it finish once only the
// decode is left), the prompt cache skips the encoders, nothing leaks.

import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { UsageError } from '../../src/errors.js';
import type { WebGpuRuntime } from '../../src/gpu/runtime.js';
import type { RgbImage } from '../../src/image.js';
import { ModelFolder } from '../../src/io/model-folder.js';
import { nodeModelFs } from '../../src/io/node-file.js';
import { CLIPTextModel } from '../../src/models/clip.js';
import { UNet2DConditionModel } from '../../src/models/unet.js';
import type { LiveFrame, LiveRunner, LiveSession } from '../../src/pipeline/live.js';
import { SdxlTurboPipeline } from '../../src/pipeline/sdxl-turbo.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';
import { testGpu } from '../helpers/gpu.js';

const SIZE = { width: 64, height: 64 };
const SEED = 1234;
const PROMPTS = ['a', 'a ph', 'a photo', 'a photo of a', 'a photo of a cat'];

let pipeline: SdxlTurboPipeline;
const sessions: LiveSession[] = [];
const open = (options: Parameters<SdxlTurboPipeline['live']>[0]): LiveSession => {
  const s = pipeline.live(options);
  sessions.push(s);
  return s;
};
const liveBytes = (): number => pipeline.gpu.pool.stats.liveBytes;

beforeAll(async () => {
  const gpu = await testGpu();
  pipeline = await SdxlTurboPipeline.load(gpu, await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp32' }), { dtype: 'f32' });
});
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(sessions.splice(0).map((s) => s.close()));
});
afterAll(async () => pipeline.dispose());

/** The first frame of `frames` showing request `sequence` or a later one. */
async function frameFor(frames: AsyncIterator<LiveFrame>, sequence: number): Promise<LiveFrame> {
  for (;;) {
    const next = await frames.next();
    if (next.done) throw new Error(`the session ended before request ${sequence} got a frame`);
    if (next.value.request >= sequence) return next.value;
  }
}

async function oneShot(prompt: string, steps: number, image?: { image: RgbImage; strength: number }): Promise<Uint8Array> {
  const common = { prompt, seed: SEED, steps, ...SIZE };
  const result = image ? await pipeline.imageToImage({ ...common, ...image }) : await pipeline.generate(common);
  return result.images[0]!.data;
}

describe('live session', () => {
  it('five updates in a row give exactly the last prompt\'s image; the four before are dropped', async () => {
    const session = open({ ...SIZE, seed: SEED, steps: 2 });
    const frames = session.frames();
    const sequences = PROMPTS.map((prompt) => session.update({ prompt }));
    expect(sequences).toEqual([1, 2, 3, 4, 5]);
    const frame = await frameFor(frames, 5);
    expect(frame.request).toBe(5);
    expect(frame.prompt).toBe(PROMPTS[4]);
    expect(frame.image.parameters.seed).toBe(SEED);
    // The first request started at once and was cancelled at its first stage boundary; the
    // next three were replaced while waiting.
    expect(session.stats()).toMatchObject({ frames: 1, dropped: 4 });
    // Exactly: the same draws from the same seed, the same kernels.
    expect(frame.image.data).toEqual(await oneShot(PROMPTS[4]!, 2));
    const t = frame.timings;
    for (const v of [t.queue, t.encode, t.denoise, t.decode]) expect(v).toBeGreaterThanOrEqual(0);
    expect(t.total).toBeGreaterThanOrEqual(t.encode + t.denoise + t.decode);
  });

  it('a newer request cancels the running frame between UNet steps, and its memory comes back', async () => {
    const session = open({ ...SIZE, seed: SEED, steps: 3 });
    await session.ready(); // the dry run's UNet forwards, before the spy counts
    // The spy counts UNet forwards: a replayed step (gpu/replay.ts) runs its recorded dispatches
    // without calling forward(), so this test runs every step eagerly.
    const gpu = pipeline.gpu as WebGpuRuntime;
    gpu.replayForwards = false;
    onTestFinished(() => {
      gpu.replayForwards = true;
    });
    const before = liveBytes();
    const frames = session.frames();
    const original = UNet2DConditionModel.prototype.forward;
    let calls = 0;
    vi.spyOn(UNet2DConditionModel.prototype, 'forward').mockImplementation(function (this: UNet2DConditionModel, input) {
      // In the first frame's first step: the frame must stop before its second.
      if (++calls === 1) session.update({ prompt: 'a dog' });
      return original.call(this, input);
    });
    session.update({ prompt: 'a cat' });
    const frame = await frameFor(frames, 2);
    expect(frame.prompt).toBe('a dog');
    expect(calls).toBe(1 + 3);
    expect(session.stats()).toMatchObject({ frames: 1, dropped: 1 });
    vi.restoreAllMocks();
    expect(frame.image.data).toEqual(await oneShot('a dog', 3));
    await session.close();
    expect(liveBytes()).toBe(before);
  });

  it('a frame whose denoising is done finishes (finishDecode), or is cancelled before the VAE without it', async () => {
    for (const finishDecode of [true, false]) {
      const session = open({ ...SIZE, seed: SEED, steps: 2, finishDecode });
      await session.ready();
      const seen: LiveFrame[] = [];
      session.onFrame = (f) => seen.push(f);
      const frames = session.frames();
      // The update comes with the progress event of the last step (its GPU work done): only
      // the decode is left. The session's runner is wrapped to see that event.
      const runner = (session as unknown as { runner: LiveRunner<Uint8Array> }).runner;
      const run = runner.run.bind(runner);
      let sent = false;
      runner.run = (o, cache) =>
        run(
          {
            ...o,
            onProgress: (e) => {
              o.onProgress?.(e);
              if (!sent && e.stage === 'denoise' && e.done === e.total) {
                sent = true;
                session.update({ prompt: 'second' });
              }
            },
          },
          cache,
        );
      session.update({ prompt: 'first' });
      await frameFor(frames, 2);
      expect(seen.map((f) => f.prompt), `finishDecode ${finishDecode}`).toEqual(finishDecode ? ['first', 'second'] : ['second']);
      expect(session.stats().dropped).toBe(finishDecode ? 0 : 1);
      await session.close();
    }
  });

  it('editing back to a cached prompt skips both encoders and gives the same image', async () => {
    const session = open({ ...SIZE, seed: SEED });
    // The dry run of the shape (its encoders record, not compute) happens here, not in a frame.
    await session.ready();
    const frames = session.frames();
    const encoder = vi.spyOn(CLIPTextModel.prototype, 'forward');
    const images: Uint8Array[] = [];
    const encodes: number[] = [];
    for (const prompt of ['a cat', 'a dog', 'a cat']) {
      const before = encoder.mock.calls.length;
      images.push((await frameFor(frames, session.update({ prompt }))).image.data);
      encodes.push(encoder.mock.calls.length - before);
    }
    // CLIP-L runs once per uncached prompt (bigG is a CLIPTextModelWithProjection, also skipped:
    // the cache holds both halves of the embeddings).
    expect(encodes).toEqual([1, 1, 0]);
    expect(images[2]).toEqual(images[0]);
    expect(images[1]).not.toEqual(images[0]);
  });

  it('setLoras drops the cached embeddings: the next frame is the one-shot image with the LoRA', async () => {
    const session = open({ ...SIZE, seed: SEED });
    await session.ready();
    const frames = session.frames();
    await frameFor(frames, session.update({ prompt: 'a cat' }));
    const lora = new Blob([readFileSync(`${FIXTURES}tiny-sdxl-extensions/lora/tiny_lora_kohya.safetensors`)]);
    await pipeline.setLoras([{ source: lora, scale: 0.8 }]);
    try {
      const encoder = vi.spyOn(CLIPTextModel.prototype, 'forward');
      const frame = await frameFor(frames, session.update({ prompt: 'a cat' }));
      expect(encoder).toHaveBeenCalledTimes(1);
      expect(frame.image.data).toEqual(await oneShot('a cat', 1));
    } finally {
      await pipeline.setLoras([]);
    }
  });

  it('twenty frames, some cancelled, leave the pool\'s live bytes as they were', async () => {
    const before = liveBytes();
    const session = open({ ...SIZE, seed: SEED });
    const frames = session.frames();
    const prompts = ['a cat', 'a dog', 'a red bicycle', 'a lighthouse'];
    // One round to fill the cache: its embeddings stay until close().
    for (const prompt of prompts) await frameFor(frames, session.update({ prompt }));
    const cached = liveBytes();
    for (let i = 0; i < 20; i++) {
      // Every third frame is preceded by a request it cancels.
      if (i % 3 === 0) session.update({ prompt: prompts[(i + 1) % 4]! });
      await frameFor(frames, session.update({ prompt: prompts[i % 4]! }));
    }
    expect(session.stats().frames).toBeGreaterThanOrEqual(24);
    expect(liveBytes()).toBe(cached);
    await session.close();
    expect(liveBytes()).toBe(before);
  });

  it('image-to-image: each new input image gives the one-shot image of it at the fixed strength', async () => {
    const session = open({ ...SIZE, seed: SEED, strength: 0.5 });
    const frames = session.frames();
    for (const shade of [40, 200]) {
      const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).map((_, i) => (shade + i) % 256) };
      const frame = await frameFor(frames, session.update({ prompt: 'a watercolor', image }));
      // Default steps: the fewest of which strength 0.5 keeps one, as imageToImage's default.
      expect(frame.image.data).toEqual(await oneShot('a watercolor', 2, { image, strength: 0.5 }));
    }
  });

  it('close() ends the iterators, cancels the running frame and refuses later updates', async () => {
    const session = open({ ...SIZE, seed: SEED });
    const frames = session.frames();
    const waiting = frames.next();
    session.update({ prompt: 'a cat' });
    await session.close();
    expect(await waiting).toEqual({ done: true, value: undefined });
    expect(await frames.next()).toEqual({ done: true, value: undefined });
    expect(session.stats()).toMatchObject({ frames: 0, dropped: 1 });
    expect(() => session.update({ prompt: 'a dog' })).toThrow(/update\(\) after close\(\)/);
    await session.close();
  });

  it('an onFrame that throws ends the session with its error', async () => {
    const session = open({ ...SIZE, seed: SEED });
    const frames = session.frames();
    const bug = new Error('a bug in the consumer');
    session.onFrame = () => {
      throw bug;
    };
    session.update({ prompt: 'a cat' });
    // The frame reached the iterators before onFrame threw; then the error does.
    expect((await frames.next()).value?.prompt).toBe('a cat');
    await expect(frames.next()).rejects.toBe(bug);
    expect(() => session.update({ prompt: 'a dog' })).toThrow(bug);
  });

  it('bad options and requests are UsageErrors naming the option', async () => {
    expect(() => pipeline.live({ width: 60 })).toThrow(UsageError);
    expect(() => pipeline.live({ width: 60 })).toThrow(/width must be a multiple of 8, got 60/);
    expect(() => pipeline.live({ seed: -2 })).toThrow(/seed must be an integer/);
    expect(() => pipeline.live({ steps: 0 })).toThrow(/steps must be an integer in \[1, /);
    expect(() => pipeline.live({ strength: 1.5 })).toThrow(/strength must be in \(0, 1\], got 1.5/);
    const session = open({ ...SIZE, seed: SEED });
    expect(() => session.update({ prompt: 3 as unknown as string })).toThrow(/prompt must be a string, got 3/);
    expect(() => session.update({ prompt: 'x', strength: 0.5 })).toThrow(/strength needs image/);
    expect(() => session.update({ prompt: 'x', image: { width: 2, height: 2, data: new Uint8Array(3) } })).toThrow(/image must be an RGB image/);
    await expect(pipeline.live({ width: 8192, height: 8192 }).ready()).rejects.toThrow(UsageError);
  });
});
