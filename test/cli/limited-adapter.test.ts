// The CLI on an adapter without shader-f16 and timestamp-query. This machine's lavapipe has
// both, so the device is opened without them: what openNodeGpu gives where an adapter lacks
// them. In this process, since the CLI takes no such option (one real device only: Dawn now
// and then crashes at exit in a process that opened several).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import type { Gpu } from '../../src/gpu/runtime.js';
import { TINY } from '../helpers/fixtures.js';
import { expectUsageError, runMain } from './run.js';

/** Set by a test: openNodeGpu returns this stand-in instead of opening a device. */
let standIn: Gpu | null = null;

vi.mock('../../src/gpu/node.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/gpu/node.js')>();
  return { ...real, openNodeGpu: async (options = {}) => standIn ?? real.openNodeGpu({ ...options, allowF16: false, profile: false }) };
});

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-cli-limited-'));
});
afterAll(async () => rm(tmp, { recursive: true, force: true }));

const base = ['generate', '--model', TINY, '--prompt', 'a photo of a cat', '--width', '64', '--height', '64', '--variant', 'fp32'];

it('--dtype f16 is refused by name before any weight is uploaded, and the device is released', async () => {
  // The check needs only the device's features: a stand-in without shader-f16 that records dispose().
  const dispose = vi.fn();
  standIn = { f16: false, adapterName: 'an adapter without shader-f16', dispose } as unknown as Gpu;
  try {
    expectUsageError(await runMain([...base, '--dtype', 'f16']), '--dtype f16 needs the shader-f16 feature, which this adapter (an adapter without shader-f16) lacks; use f32');
  } finally {
    standIn = null;
  }
  expect(dispose).toHaveBeenCalledOnce();
});

it('computes in f32 by default and says why --profile has no kernel times', async () => {
  const run = await runMain([...base, '--verbose', '--profile', '--out', join(tmp, 'cat.png')]);
  expect(run.err).toEqual([]);
  expect(run.code).toBe(0);
  expect(run.out).toContain('compute: f32 (text encoders, UNet), f32 (VAE)');
  expect(run.out.filter((l) => l.startsWith('profile: '))).toEqual([expect.stringMatching(/has no timestamp-query, so no per-kernel GPU times$/)]);
});
