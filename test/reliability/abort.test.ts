// Cancel per step, release everything (issue 13, item 9): an abort at every progress event of a
// generation (each stage's start and end, each denoising step) rejects with the signal's reason,
// lands at the next boundary (the end of the stage it came in, or before the next denoising
// step), and leaves the pool's live bytes where they were; a run after it gives the image an
// uncancelled run gives.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPipeline, type Pipeline } from '../../src/index.js';
import type { ProgressEvent } from '../../src/pipeline/options.js';
import { TINY } from '../helpers/fixtures.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const T2I = { prompt: 'a photo of a cat', steps: 2, seed: 5, width: 64, height: 72 };
const IMAGE = { width: 64, height: 72, data: new Uint8Array(64 * 72 * 3).map((_, i) => (i * 37) % 256) };
const I2I = { ...T2I, image: IMAGE, strength: 0.7 };
const key = (e: ProgressEvent): string => `${e.stage} ${e.done}/${e.total}`;

describe('aborted loads', () => {
  it('an abort at each component and while compiling rejects with the reason and goes no further', async () => {
    for (const at of ['load text_encoder', 'load unet', 'load vae', 'compile']) {
      const controller = new AbortController();
      const seen: string[] = [];
      const outcome = await loadPipeline(TINY, {
        preflight: T2I,
        signal: controller.signal,
        onProgress: (e) => {
          const name = e.stage === 'load' ? `load ${e.component}` : e.stage;
          if (seen.at(-1) !== name) seen.push(name);
          if (name === at) controller.abort();
        },
      }).then(() => 'loaded', (e: unknown) => e);
      expect(outcome, at).toBe(controller.signal.reason);
      // No later component is read once the abort landed.
      expect(seen.at(-1), at).toBe(at);
    }
  });
});

describe('aborts', () => {
  let pipeline: Pipeline;
  beforeAll(async () => {
    pipeline = await loadPipeline(TINY, { preflight: T2I });
  });
  afterAll(() => pipeline.dispose());

  for (const [name, run] of [['text-to-image', (o: object) => pipeline.generate({ ...T2I, ...o })], ['image-to-image', (o: object) => pipeline.imageToImage({ ...I2I, ...o })]] as const) {
    it(`${name}: an abort at each progress event lands there and releases every buffer`, async () => {
      const events: string[] = [];
      const reference = await run({ onProgress: (e: ProgressEvent) => events.push(key(e)) });
      expect(events.filter((e) => e.startsWith('denoise'))).toEqual(name === 'text-to-image' ? ['denoise 1/2', 'denoise 2/2'] : ['denoise 1/1']);
      for (const at of events) {
        const live = pipeline.gpu.pool.stats.liveBytes;
        const controller = new AbortController();
        const seen: string[] = [];
        const outcome = await run({
          signal: controller.signal,
          onProgress: (e: ProgressEvent) => {
            seen.push(key(e));
            if (key(e) === at) controller.abort();
          },
        }).then(() => 'finished', (e: unknown) => e);
        expect(outcome, at).toBe(controller.signal.reason);
        expect((outcome as Error).name).toBe('AbortError');
        const [stage, count] = at.split(' ') as [string, string];
        const total = count.split('/')[1];
        // What may follow: the end of the stage the abort came in; no step after a step.
        const after = stage === 'denoise' || count === `${total}/${total}` ? [] : [`${stage} ${total}/${total}`];
        expect(seen.slice(seen.indexOf(at) + 1), `progress after an abort at ${at}`).toEqual(after);
        expect(pipeline.gpu.pool.stats.liveBytes, `live bytes after an abort at ${at}`).toBe(live);
      }
      const again = await run({});
      expect(again.images[0]!.data).toEqual(reference.images[0]!.data);
    });
  }
});
