// Test plumbing for tunable ops: the calls an op reports to `gpu.tuning` while observed, and
// running every candidate of such a call on its own prepared inputs (what `tune` does).

import { expect } from 'vitest';
import type { Gpu } from '../../src/gpu/runtime.js';
import type { TunableCall } from '../../src/gpu/tuning.js';

/** The tunable calls `fn` makes on `gpu`. */
export function observedCalls(gpu: Gpu, fn: () => void): TunableCall[] {
  const calls: TunableCall[] = [];
  gpu.tuning.observe((call) => calls.push(call));
  try {
    fn();
  } finally {
    gpu.tuning.observe(null);
  }
  return calls;
}

/** Runs every candidate of `call` on inputs its `prepare` makes, and waits for the GPU: the
 *  prepared inputs fit the op, and no candidate fails to dispatch. */
export async function runEveryCandidate(gpu: Gpu, call: TunableCall): Promise<void> {
  expect(call.candidates).toContain(call.heuristic);
  const prepared = call.prepare(gpu);
  try {
    for (const variant of call.candidates) prepared.run(variant);
    await gpu.sync();
  } finally {
    prepared.dispose();
  }
}
