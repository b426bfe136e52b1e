// Device lost (issue 13, item 11), simulated with device.destroy() in the middle of a run: the
// run rejects with a GpuError saying so, the pipeline reports itself unusable and rejects later
// calls at once, dispose() still works, and loadPipeline opens a new device in the same process.

import { describe, expect, it } from 'vitest';
import { GpuError } from '../../src/errors.js';
import type { WebGpuRuntime } from '../../src/gpu/runtime.js';
import { loadPipeline } from '../../src/index.js';
import { TINY } from '../helpers/fixtures.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const RUN = { prompt: 'a photo of a cat', steps: 4, seed: 1, width: 64, height: 64 };

describe('device lost', () => {
  it('mid-run: the run rejects with a GpuError, the pipeline is unusable, a new load works', async () => {
    const pipeline = await loadPipeline(TINY);
    expect(pipeline.usable).toBe(true);
    const gpu = pipeline.gpu as WebGpuRuntime;
    const steps: number[] = [];
    const run = pipeline.generate({
      ...RUN,
      onProgress: (e) => {
        if (e.stage !== 'denoise') return;
        steps.push(e.done);
        if (e.done === 1) gpu.device.destroy();
      },
    });
    const error = await run.then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(GpuError);
    expect((error as Error).message).toMatch(/^generate\(\) failed: the WebGPU device was lost \(destroyed.*\): this pipeline cannot run again; dispose\(\) it and load another with loadPipeline\(\)$/);
    expect(steps).toEqual([1]);
    expect(pipeline.usable).toBe(false);
    await expect(pipeline.generate(RUN)).rejects.toThrow(/^generate\(\) after the WebGPU device was lost .*cannot run again/);
    await expect(pipeline.imageToImage({ ...RUN, image: { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) }, strength: 0.5 })).rejects.toThrow(GpuError);
    await pipeline.dispose();

    const again = await loadPipeline(TINY);
    try {
      const result = await again.generate(RUN);
      expect(result.images).toHaveLength(1);
      expect(again.usable).toBe(true);
    } finally {
      await again.dispose();
    }
    expect(again.usable).toBe(false);
  });
});
