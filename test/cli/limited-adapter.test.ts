// The CLI on an adapter without shader-f16 and timestamp-query. This machine's lavapipe has
// both, so the device is opened without them: what openNodeGpu gives where an adapter lacks them.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { TINY } from '../helpers/fixtures.js';
import { expectUsageError, runMain } from './run.js';

vi.mock('../../src/gpu/node.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/gpu/node.js')>();
  return { ...real, openNodeGpu: (options = {}) => real.openNodeGpu({ ...options, allowF16: false, profile: false }) };
});

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-cli-limited-'));
});
afterAll(async () => rm(tmp, { recursive: true, force: true }));

const base = ['generate', '--model', TINY, '--prompt', 'a photo of a cat', '--width', '64', '--height', '64', '--variant', 'fp32'];

it('--dtype f16 is refused by name, before any weight is uploaded', async () => {
  expectUsageError(await runMain([...base, '--dtype', 'f16']), '--dtype f16 needs the shader-f16 feature', 'use --dtype f32');
});

it('computes in f32 by default and says why --profile has no kernel times', async () => {
  const run = await runMain([...base, '--verbose', '--profile', '--out', join(tmp, 'cat.png')]);
  expect(run.err).toEqual([]);
  expect(run.code).toBe(0);
  expect(run.out).toContain('compute: f32 (text encoders, UNet), f32 (VAE)');
  expect(run.out.filter((l) => l.startsWith('profile: '))).toEqual([expect.stringMatching(/has no timestamp-query, so no per-kernel GPU times$/)]);
});
