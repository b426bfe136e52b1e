// Dawn's wait on a software adapter (src/gpu/dawn-poll.ts): while such a device is open, a
// wait's re-arms by the binding (an anonymous native function re-arming itself) go to
// setImmediate for its first millisecond and then through a timer, and nothing else changes.
// What it gains is measured in BENCHMARKS.md.

import { describe, expect, it } from 'vitest';
import { throttleDawnPolling } from '../../src/gpu/dawn-poll.js';
import { openNodeGpu } from '../../src/gpu/node.js';

/** A function shaped as Dawn's poll (native, anonymous) that runs `body`. */
function dawnLike(body: (...args: unknown[]) => void): (...args: unknown[]) => void {
  const bound = body.bind(null);
  Object.defineProperty(bound, 'name', { value: '' });
  return bound;
}

/** What setImmediate scheduled `callback` as: 'Immediate' or 'Timeout'. */
const kind = (handle: unknown): string => (handle as object).constructor.name;

/** A wait as Dawn's binding makes one: a poll that re-arms itself until `done()`; what each
 *  re-arm was scheduled as, in order. */
function dawnWait(done: () => boolean): Promise<string[]> {
  const kinds: string[] = [];
  return new Promise((resolve) => {
    const poll = dawnLike(() => (done() ? resolve(kinds) : kinds.push(kind(setImmediate(poll)))));
    kinds.push(kind(setImmediate(poll)));
  });
}

const after = (ms: number): (() => boolean) => {
  const end = performance.now() + ms;
  return () => performance.now() >= end;
};

describe("Dawn's wait", () => {
  it("polls the first millisecond of a wait at once, then by timer, and only Dawn's re-arms", async () => {
    const release = throttleDawnPolling();
    try {
      const kinds = await dawnWait(after(40));
      const firstTimer = kinds.indexOf('Timeout');
      expect(kinds[0]).toBe('Immediate'); // a new wait starts at once
      expect(firstTimer).toBeGreaterThan(0);
      expect(kinds.slice(firstTimer).every((k) => k === 'Timeout')).toBe(true);
      // A spinning poll re-arms thousands of times in 40 ms; by 1 ms timer ticks, at most 40.
      expect(kinds.length - firstTimer).toBeLessThanOrEqual(40);
      // The next wait starts at once again.
      expect((await dawnWait(after(0)))[0]).toBe('Immediate');
      // JavaScript callbacks and named native ones ("bound named") are never rerouted.
      const js = setImmediate(() => {});
      const named = setImmediate(function named() {}.bind(null));
      expect([kind(js), kind(named)]).toEqual(['Immediate', 'Immediate']);
      // A rerouted poll still runs, with its arguments.
      const calls: unknown[][] = [];
      setImmediate(dawnLike((...args) => calls.push(args)), 1, 'two');
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect(calls).toEqual([[1, 'two']]);
    } finally {
      release();
    }
    expect(await dawnWait(after(5))).not.toContain('Timeout'); // released: Dawn's own polling
  });

  it('hands a re-arm still on its timer back to setImmediate when the last holder lets go', async () => {
    const release = throttleDawnPolling();
    const order: string[] = [];
    const start = performance.now();
    let released = false;
    const poll = dawnLike(() => {
      if (released) {
        order.push('poll');
        return;
      }
      setImmediate(poll); // past the first millisecond, onto a 1 ms timer
      if (performance.now() - start < 10) return;
      released = true;
      release();
      release(); // a second release changes nothing
      setImmediate(() => order.push('js'));
    });
    setImmediate(poll);
    await new Promise((resolve) => setTimeout(resolve, 30));
    // Handed back, the pending poll runs among the immediates, before the later 'js'; left on
    // its timer it would run a millisecond after it.
    expect(order).toEqual(['poll', 'js']);
  });

  it('is held while a software-adapter device is open, and let go when it is disposed', async () => {
    const gpu = await openNodeGpu();
    const whileOpen = await dawnWait(after(20));
    gpu.dispose();
    // openNodeGpu drops the instance a turn later; the file ending first can crash Dawn.
    await new Promise((resolve) => setTimeout(resolve, 50));
    // On lavapipe (CI) the adapter is software; a hardware GPU keeps Dawn's own polling.
    expect(whileOpen.includes('Timeout'), gpu.adapterName).toBe(gpu.tuning.cpu);
    expect(await dawnWait(after(5))).not.toContain('Timeout');
  });
});
