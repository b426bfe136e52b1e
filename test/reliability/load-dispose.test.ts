// No leaks across loads (issue 13, item 10): devices opened and disposed, and load → generate →
// dispose cycles, leave the process's file descriptors (memfds included: lavapipe backs each
// device's memory with one) where they were. RSS is measured by `npm run bench:soak`
// (BENCHMARKS.md), not asserted here.

import { readdirSync, readlinkSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { openNodeGpu } from '../../src/gpu/node.js';
import { loadPipeline } from '../../src/index.js';
import { TINY } from '../helpers/fixtures.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const RUN = { prompt: 'a photo of a cat', steps: 1, seed: 2, width: 64, height: 64 };

function openFds(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/self/fd/${fd}`)];
    } catch {
      return []; // the directory's own descriptor, closed by now
    }
  });
}

// Dawn frees a destroyed device's memory when its JS objects are collected: the test collects.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Lets openNodeGpu drop a disposed device's instance (a turn later), then collects. */
async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 50));
  gc();
  await new Promise((resolve) => setTimeout(resolve, 50));
}

const memfds = (fds: string[]): number => fds.filter((f) => f.startsWith('/memfd:')).length;

describe('leaks across loads', () => {
  it('devices opened and disposed leave no memfd or other descriptor behind', async () => {
    // The first devices may start Dawn's process-wide threads and their descriptors.
    for (let i = 0; i < 2; i++) {
      (await openNodeGpu()).dispose();
      await settle();
    }
    const before = openFds();
    for (let i = 0; i < 6; i++) {
      const gpu = await openNodeGpu();
      expect(memfds(openFds())).toBeGreaterThan(memfds(before)); // the device's memory is open…
      gpu.dispose();
      await settle();
      const after = openFds();
      // …and closed, but for at most the latest device's, until Dawn lets it go (it did not:
      // each device's memfd stayed open for good before dispose removed the error listener).
      expect(after.filter((f) => !f.startsWith('/memfd:')).sort(), `descriptors after device ${i + 1}`).toEqual(before.filter((f) => !f.startsWith('/memfd:')).sort());
      expect(memfds(after), `memfds after device ${i + 1}`).toBeLessThanOrEqual(1);
    }
  });

  it('load → generate → dispose cycles leave descriptors as they were and the pool empty', async () => {
    const cycle = async (): Promise<void> => {
      const pipeline = await loadPipeline(TINY, { preflight: RUN });
      await pipeline.generate(RUN);
      expect(pipeline.gpu.pool.stats.liveBytes).toBe(0);
      await pipeline.dispose();
      await settle();
    };
    await cycle();
    await cycle();
    const before = openFds().sort();
    for (let i = 0; i < 3; i++) {
      await cycle();
      expect(openFds().sort(), `descriptors after cycle ${i + 1}`).toEqual(before);
    }
  });
});
