// Dawn's wait on a software adapter (src/gpu/dawn-poll.ts): while such a device is open, the
// binding's re-arm (an anonymous native function) goes through a timer instead of
// setImmediate, and nothing else changes. What it gains is measured in BENCHMARKS.md.

import { describe, expect, it } from 'vitest';
import { throttleDawnPolling } from '../../src/gpu/dawn-poll.js';
import { openNodeGpu } from '../../src/gpu/node.js';

/** A function shaped as Dawn's re-arm (native, anonymous) that records its call. */
function dawnLike(calls: unknown[][]): (...args: unknown[]) => void {
  const bound = ((...args: unknown[]) => calls.push(args)).bind(null);
  Object.defineProperty(bound, 'name', { value: '' });
  return bound;
}

/** What setImmediate scheduled `callback` as: 'Immediate' or 'Timeout'; cleared at once. */
function scheduledAs(callback: () => void): string {
  const handle = setImmediate(callback) as unknown as NodeJS.Immediate | NodeJS.Timeout;
  const kind = handle.constructor.name;
  if (kind === 'Timeout') clearTimeout(handle as NodeJS.Timeout);
  else clearImmediate(handle as NodeJS.Immediate);
  return kind;
}

describe("Dawn's wait", () => {
  it("sends only Dawn's re-arm through a timer, and only while held", async () => {
    const calls: unknown[][] = [];
    const release = throttleDawnPolling();
    expect(scheduledAs(dawnLike(calls))).toBe('Timeout');
    expect(scheduledAs(() => {})).toBe('Immediate'); // JavaScript callbacks
    expect(scheduledAs(function named() {}.bind(null))).toBe('Immediate'); // native but named ("bound named")
    // It still runs, with its arguments.
    setImmediate(dawnLike(calls), 1, 'two');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toEqual([[1, 'two']]);
    // A re-arm still waiting when the last holder lets go runs as an immediate.
    const handedBack: unknown[][] = [];
    setImmediate(dawnLike(handedBack), 3);
    release();
    release(); // a second release changes nothing
    await new Promise((resolve) => setImmediate(resolve));
    expect(handedBack).toEqual([[3]]);
    expect(scheduledAs(dawnLike(calls))).toBe('Immediate');
  });

  it('is held while a software-adapter device is open, and let go when it is disposed', async () => {
    const gpu = await openNodeGpu();
    const whileOpen = scheduledAs(dawnLike([]));
    gpu.dispose();
    // openNodeGpu drops the instance a turn later; the file ending first can crash Dawn.
    await new Promise((resolve) => setTimeout(resolve, 50));
    // On lavapipe (CI) the adapter is software; a hardware GPU keeps Dawn's own polling.
    expect(whileOpen, gpu.adapterName).toBe(gpu.tuning.cpu ? 'Timeout' : 'Immediate');
    expect(scheduledAs(dawnLike([]))).toBe('Immediate');
  });
});
