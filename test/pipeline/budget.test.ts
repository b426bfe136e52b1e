// Memory budgets (src/pipeline/budget.ts): byte sizes as the CLI takes them, the planner's
// choices on the tiny fixture's dry run (keep everything, release the encoders, release the UNet
// while encoding, tile the decode, tile image-to-image's encode), the one-line refusal naming the
// plan, and budgets that need decode or encode tiles giving the untiled image within the
// tiled-VAE tolerance, each stage's measured pool peak as planned.

import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { loadPipeline } from '../../src/index.js';
import { describeChoice, type MemoryChoice, parseByteSize, planBudget } from '../../src/pipeline/budget.js';
import { watchStages } from '../../src/gpu/allocated.js';
import { withDefaults } from '../../src/gpu/recording.js';
import { UNIFORM_RING_BYTES, UNIFORM_SLOT } from '../../src/gpu/runtime.js';
import { nodeModelFs } from '../../src/io/node-file.js';
import { ModelFolder } from '../../src/io/model-folder.js';
import { type RunShape, shapeInput, UNBOUNDED } from '../../src/pipeline/dry-run.js';
import { planRun } from '../../src/pipeline/preflight.js';
import { FIXTURES, readConfigs, TINY } from '../helpers/fixtures.js';
import { relL2 } from '../helpers/gpu.js';

const configs = readConfigs(TINY);
const LIMITS = withDefaults(UNBOUNDED);
const run = (side: number, imageToImage = false): RunShape => ({ width: side, height: side, batch: 1, steps: 1, imageToImage });
const budgetFor = (side: number, maxMemory: number, imageToImage = false) => planBudget(configs, shapeInput(configs, run(side, imageToImage), 'f32'), { limits: LIMITS }, maxMemory);

describe('parseByteSize', () => {
  it('takes bytes with decimal and binary suffixes', () => {
    expect(parseByteSize('6000000000', 'maxMemory')).toBe(6e9);
    expect(parseByteSize('6GB', 'maxMemory')).toBe(6e9);
    expect(parseByteSize('6 GiB', 'maxMemory')).toBe(6 * 2 ** 30);
    expect(parseByteSize('512MiB', 'maxMemory')).toBe(512 * 2 ** 20);
    expect(parseByteSize('1.5gb', 'maxMemory')).toBe(1.5e9);
    expect(parseByteSize('4kB', 'maxMemory')).toBe(4000);
  });
  it('refuses anything else by name', () => {
    for (const bad of ['', '6 GBs', '-1GB', '0', 'six', '6XB', '1e400']) {
      expect(() => parseByteSize(bad, 'maxMemory'), bad).toThrow(UsageError);
      expect(() => parseByteSize(bad, 'maxMemory'), bad).toThrow(/^maxMemory must be a size in bytes/);
    }
  });
});

describe('planBudget on the tiny fixture (f32, 128×128)', () => {
  it('keeps everything when it fits, and each stage is its resident weights plus its activations (and the UNet context it carries)', async () => {
    const { choice, dryRun } = await budgetFor(128, 2 ** 40);
    const row = (n: string) => dryRun.plan.find((r) => r.network === n)!;
    const encoders = row('text_encoder').weightBytes! + row('text_encoder_2').weightBytes!;
    const all = encoders + row('unet').weightBytes! + row('vae decode').weightBytes!;
    expect(choice).toMatchObject({ residency: 'all', decodeLimit: null, decode: 'untiled' });
    // Every stage also holds the runtime's uniform ring; the replayed step, a uniform slot per
    // dispatch and its copy of the context.
    const held = all + UNIFORM_RING_BYTES;
    const context = row('unet context').pooledBytes;
    const load = choice.stages[0]!;
    expect(choice.stages.slice(1)).toEqual([
      { stage: 'encode-prompt', held, bytes: held + row('text_encoder').pooledBytes + row('text_encoder_2').pooledBytes },
      { stage: 'denoise', held, bytes: held + 2 * context + row('unet').pooledBytes + row('unet').dispatches * UNIFORM_SLOT },
      { stage: 'decode', held: held + context, bytes: held + context + row('vae decode').pooledBytes },
    ]);
    // The load (measured by running it on the recording device) ends holding every weight, and
    // holds more on the way: a fused weight is built beside its parts.
    expect(load).toMatchObject({ stage: 'load', held: UNIFORM_RING_BYTES });
    expect(load.bytes).toBeGreaterThan(held);
    expect(choice.peak).toBe(Math.max(...choice.stages.map((s) => s.bytes)));
  });

  it('releases the encoders, then the UNet while encoding, then tiles the decode as the budget shrinks', async () => {
    const { choice: full } = await budgetFor(128, 2 ** 40);
    const stage = (c: MemoryChoice, name: string): number => c.stages.find((s) => s.stage === name)!.bytes;
    // Just under the untiled decode: everything stays, the decode tiles.
    const tiled = (await budgetFor(128, stage(full, 'decode') - 1)).choice;
    expect(tiled).toMatchObject({ residency: 'all', decode: expect.stringMatching(/^2×2 tiles/) });
    expect(tiled.peak).toBeLessThan(stage(full, 'decode'));
    // Room for the encoding with all resident, not for the denoise beside the encoders: they go
    // after encoding, and the decode runs untiled.
    const released = (await budgetFor(128, stage(full, 'encode-prompt'))).choice;
    expect(released).toMatchObject({ residency: 'release-encoders', decode: 'untiled' });
    // Under the encoders beside the UNet: the UNet goes while they run.
    const sequential = (await budgetFor(128, 15e6)).choice;
    expect(sequential).toMatchObject({ residency: 'sequential', decode: 'untiled' });
    // Between that plan's encoding and its untiled decode: the decode tiles.
    const budget = (stage(sequential, 'encode-prompt') + stage(sequential, 'decode')) / 2;
    const smallest = (await budgetFor(128, budget)).choice;
    expect(smallest).toMatchObject({ residency: 'sequential', decode: expect.stringMatching(/tiles/) });
    for (const c of [tiled, released, sequential, smallest]) {
      console.log(describeChoice(c));
      expect(c.peak).toBeLessThanOrEqual(c.maxMemory);
    }
  });

  it('starts from released encoders when releaseEncoders asks', async () => {
    const { choice } = await planBudget(configs, shapeInput(configs, run(128), 'f32'), { limits: LIMITS }, 2 ** 40, 'release-encoders');
    expect(choice.residency).toBe('release-encoders');
  });

  it('refuses a budget no plan fits, on one line naming the plan', async () => {
    const error = await budgetFor(128, 5e6).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    expect(message).toMatch(/^maxMemory 5\.0 MB cannot hold a 128×128 run: the leanest plan \(text encoders released after encoding and the UNet while they run\) needs load 12\.9 MB, encode-prompt 13\.1 MB, denoise 10\.7 MB, decode 14\.7 MB untiled/);
    expect(message).toMatch(/text_encoder \S+ MB \+ .*unet \S+ MB \+ .*vae decode \S+ MB \+ /);
  });

  it("image-to-image: keeps the encode untiled while it fits, tiles it (as diffusers' tiled_encode does) when it does not", async () => {
    // 128²: the untiled encode (3.7 MB of activations) fits beside every weight under 24 MB,
    // the untiled decode (5.4 MB) does not: only the decode tiles.
    const decodeOnly = (await budgetFor(128, 24e6, true)).choice;
    expect(decodeOnly).toMatchObject({ residency: 'all', encode: 'untiled', encodeLimit: null, decode: expect.stringMatching(/^2×2 tiles/) });
    // 192², 14 MB: the leanest residency holds 8.2 MB of weights through the VAE stages (and
    // the decode 0.8 MB of UNet context), so neither the untiled encode (9.6 MB of activations,
    // its input image included) nor the decode (13.5 MB) fits.
    const { choice, dryRun } = await budgetFor(192, 14e6, true);
    console.log(describeChoice(choice));
    expect(choice).toMatchObject({ residency: 'sequential', encode: expect.stringMatching(/^2×2 tiles of 15×15 latent px/), decode: expect.stringMatching(/^3×3 tiles/) });
    expect(describeChoice(choice)).toMatch(/VAE decode 3×3 tiles .*, VAE encode 2×2 tiles of 15×15 latent px/);
    expect(choice.encodeLimit).not.toBeNull();
    expect(choice.peak).toBeLessThanOrEqual(14e6);
    // The plan's dry run is the tiled one: its encode row is what the stage counts.
    const encodeRow = dryRun.plan.find((r) => r.network === 'vae encode')!;
    expect(encodeRow.note).toMatch(/^f32, 2×2 tiles of 15×15 latent px/);
    const untiled = (await budgetFor(192, 2 ** 40, true)).dryRun.plan.find((r) => r.network === 'vae encode')!;
    expect(encodeRow.pooledBytes).toBeLessThan(untiled.pooledBytes);
    const stage = choice.stages.find((s) => s.stage === 'encode-image')!.bytes;
    const resident = ['unet', 'vae decode'].reduce((sum, n) => sum + dryRun.plan.find((r) => r.network === n)!.weightBytes!, 0);
    expect(stage).toBe(resident + encodeRow.pooledBytes + UNIFORM_RING_BYTES);
  });

  it('refuses an image-to-image budget no plan fits, on one line naming the encode', async () => {
    const error = await budgetFor(192, 5e6, true).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    expect(message).toMatch(/^maxMemory 5\.0 MB cannot hold a 192×192 run: the leanest plan \(text encoders released after encoding and the UNet while they run\) needs load 12\.9 MB, encode-prompt 13\.1 MB, encode-image 18\.1 MB untiled, denoise 11\.4 MB, decode 22\.8 MB untiled/);
    expect(message).toMatch(/vae encode 9\.6 MB\); raise maxMemory/);
  });
});

describe('a budget that needs decode tiles (tiny fixture, f32, 128×128)', () => {
  it('gives the untiled image within the tiled-VAE tolerance, each stage measured within the budget', async () => {
    const size = { width: 128, height: 128 };
    const call = { prompt: 'a photo of a cat', seed: 5, ...size };
    // Between the leanest plan's encoding (13.1 MB) and its untiled decode (14.7 MB), as above.
    const maxMemory = 13.3e6;
    const plain = await loadPipeline(TINY, { variant: 'fp32', dtype: 'f32', preflight: size });
    const untiled = await plain.generate(call);
    await plain.dispose();
    // The plan never holds the UNet beside the encoders: load() leaves it for after encoding.
    const loaded = new Set<string>();
    const budgeted = await loadPipeline(TINY, { variant: 'fp32', dtype: 'f32', preflight: size, maxMemory, onProgress: (e) => e.stage === 'load' && loaded.add(e.component) });
    expect([...loaded]).toEqual(['text_encoder', 'text_encoder_2', 'vae']);
    // The load's most, every buffer counted (the device is the pipeline's own, from nothing).
    const loadPeak = budgeted.gpu.allocated.peak;
    const plan = budgeted.describe().join('\n');
    expect(plan).toMatch(/UNet while they run, VAE decode 2×2 tiles/);
    // Every buffer the device holds, at its most over each stage, within the budget; the second
    // generation loads the encoders again (the plan's encode-prompt covers that load).
    const stages = watchStages(budgeted.gpu);
    const tiled = await budgeted.generate({ ...call, onProgress: stages.onProgress });
    const again = await budgeted.generate({ ...call, onProgress: stages.onProgress });
    await budgeted.dispose();
    expect(Buffer.from(again.images[0]!.data).equals(Buffer.from(tiled.images[0]!.data))).toBe(true);
    const { choice } = await budgetFor(128, maxMemory);
    for (const s of choice.stages) {
      const measured = s.stage === 'load' ? loadPeak : stages.peaks.get(s.stage)!;
      console.log(`${s.stage}: measured ${measured}, planned ${s.bytes}`);
      expect(measured).toBeLessThanOrEqual(maxMemory);
    }
    // The loads as planned (run on the recording device): the first one to the readback buffers
    // of its finite checks [observed 1.0 kB over], the encoders' reload in the second encoding
    // beside the tokens and embeddings it carries [observed 20 kB over]; the replayed denoise
    // beside its small inputs (latents, embeddings, time ids) [observed 56 kB over].
    expect(Math.abs(loadPeak - choice.stages[0]!.bytes)).toBeLessThan(1e4);
    expect(Math.abs(stages.peaks.get('encode-prompt')! - choice.stages[1]!.bytes)).toBeLessThan(1e5);
    expect(Math.abs(stages.peaks.get('denoise')! - choice.stages[2]!.bytes)).toBeLessThan(1e5);
    // Per-tile GroupNorm statistics: the tiled-decode test's bound for 2×2 tiles (vae.test.ts),
    // 0.4, which tiles of 5 latent px need; these are 10 px [observed 3.2e-2].
    const error = relL2(tiled.images[0]!.data, untiled.images[0]!.data);
    console.log(`budgeted (tiled) vs untiled image: relative L2 ${error.toExponential(2)}`);
    expect(error).toBeLessThan(0.4);
    expect(error).toBeGreaterThan(0); // the decode did tile
  });
});

describe('a budget that needs encode tiles (tiny fixture, f32, 192×192 image-to-image)', () => {
  it('plans a tiled encode, runs it with each stage measured as planned, and gives the untiled image within the tiled-VAE tolerance', async () => {
    const size = { width: 192, height: 192 };
    // A smooth picture with edges (the tiles see different content).
    const data = new Uint8Array(192 * 192 * 3);
    for (let y = 0; y < 192; y++) for (let x = 0; x < 192; x++) for (let c = 0; c < 3; c++) data[(y * 192 + x) * 3 + c] = (x * (c + 1) + y * (3 - c) + ((x >> 5) ^ (y >> 5) ? 60 : 0)) & 255;
    const image = { ...size, data };
    const call = { prompt: 'a photo of a cat', seed: 5, ...size, image, strength: 0.5 };
    const preflight = { ...size, image, strength: 0.5 };
    // 14 MB: the leanest residency with both VAE passes tiled (the planner test above).
    const maxMemory = 14e6;
    const plain = await loadPipeline(TINY, { variant: 'fp32', dtype: 'f32', preflight });
    const untiled = await plain.imageToImage(call);
    await plain.dispose();
    const budgeted = await loadPipeline(TINY, { variant: 'fp32', dtype: 'f32', preflight, maxMemory });
    const plan = budgeted.describe().join('\n');
    expect(plan).toMatch(/VAE encode 2×2 tiles of 15×15 latent px/);
    const loadPeak = budgeted.gpu.allocated.peak;
    // Each stage: every buffer the device holds at its most (within the budget), and the pool's
    // peak alone (the activations, against the plan's).
    const stages = watchStages(budgeted.gpu);
    const poolPeaks = new Map<string, number>();
    const pool = budgeted.gpu.pool;
    const tiled = await budgeted.imageToImage({
      ...call,
      onProgress: (e) => {
        stages.onProgress(e);
        if (e.done === 0) pool.peakBytes = pool.stats.liveBytes + pool.stats.pooledBytes;
        if (e.done !== e.total) return;
        poolPeaks.set(e.stage, pool.peakBytes);
        // The denoise sends no "done 0": its peak counts from the encode's end (what stays live).
        pool.peakBytes = pool.stats.liveBytes;
      },
    });
    await budgeted.dispose();
    const { choice, dryRun } = await budgetFor(192, maxMemory, true);
    const pooled = (n: string): number => dryRun.plan.find((r) => r.network === n)!.pooledBytes;
    const planned = { 'encode-image': pooled('vae encode'), decode: pooled('unet context') + pooled('vae decode') };
    for (const s of choice.stages) {
      const measured = s.stage === 'load' ? loadPeak : stages.peaks.get(s.stage)!;
      console.log(`${s.stage}: measured ${measured} (pool ${poolPeaks.get(s.stage)}), planned ${s.bytes}`);
      expect(measured).toBeLessThanOrEqual(maxMemory);
      // The plan's VAE activations against the pool's: they differ only by the small tensors
      // the plan does not count (prompt embeddings, latents and the posterior's noise and
      // sample, (1, 4, 24, 24) f32 = 9 KB each), all under 0.1 MB together. (Not compared: the
      // denoise, whose replayed UNet takes its activations from the replay's own pool, outside
      // this one; the encode-prompt's tokens and embeddings outside the encoders' forwards.)
      if (s.stage === 'encode-image' || s.stage === 'decode') expect(Math.abs(poolPeaks.get(s.stage)! - planned[s.stage]), s.stage).toBeLessThan(1e5);
    }
    const error = relL2(tiled.images[0]!.data, untiled.images[0]!.data);
    console.log(`budgeted (encode and decode tiled) vs untiled image: relative L2 ${error.toExponential(2)}`);
    // The tiled-VAE tolerance of the decode budget above (0.4, what 2×2 decode tiles of 5 latent
    // px need); these tiles are 10–15 px and the image-to-image run keeps half the picture's
    // structure through the strength [observed 5.0e-2].
    expect(error).toBeLessThan(0.4);
    expect(error).toBeGreaterThan(0); // the VAE did tile
  });
});

describe("a load's transients (tiny fixture, f32 files into f16 weights)", () => {
  it('are planned by running the load on the recording device: the first load measures as planned', async () => {
    const size = { width: 64, height: 64 };
    const pipeline = await loadPipeline(TINY, { variant: 'fp32', dtype: 'f16', preflight: size, maxMemory: 1e9 });
    const measured = pipeline.gpu.allocated.peak;
    const { limits } = pipeline.gpu;
    await pipeline.dispose();
    // Planned from the files' tables (their formats decide the staged casts), as the pipeline plans.
    const folder = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp32' });
    const { choice, plan } = await planRun(folder, run(64), 'f16', limits, { maxMemory: 1e9 });
    await folder.close();
    const weights = plan.reduce((sum, r) => sum + (r.weightBytes ?? 0), 0);
    const load = choice!.stages.find((s) => s.stage === 'load')!.bytes;
    console.log(`load: measured ${measured}, planned ${load}, weights ${weights}`);
    // Each f32 tensor is staged as read before its cast to f16, and a fused weight is built
    // beside its parts: the load holds more than the weights [observed 2.46 MB more, planned to the byte] …
    expect(load - weights - UNIFORM_RING_BYTES).toBeGreaterThan(5e4);
    // … and measures as planned but for the readback of its finite checks (4 bytes a tensor).
    expect(Math.abs(measured - load)).toBeLessThan(4e3);
  });
});

describe('setLoras under a budget that keeps the UNet apart (tiny fixture, f32)', () => {
  it('merges into the UNet when it next loads: the image of a load with the LoRA', async () => {
    const kohya = { source: `${FIXTURES}tiny-sdxl-extensions/lora/tiny_lora_kohya.safetensors`, scale: 0.8 };
    const call = { prompt: 'a photo of a cat', seed: 9, width: 64, height: 64 };
    const options = { variant: 'fp32' as const, dtype: 'f32' as const, preflight: { width: 64, height: 64 } };
    const direct = await loadPipeline(TINY, { ...options, loras: [kohya] });
    const expected = (await direct.generate(call)).images[0]!.data;
    await direct.dispose();
    // 13.5 MB: the encoders (11.3 MB + the VAE, 13.1 MB planned) never beside the UNet (6.9 MB);
    // the UNet is not loaded yet.
    const budgeted = await loadPipeline(TINY, { ...options, maxMemory: 13.5e6 });
    expect(budgeted.describe().join('\n')).toMatch(/UNet while they run/);
    await budgeted.setLoras([kohya]);
    const got = (await budgeted.generate(call)).images[0]!.data;
    await budgeted.dispose();
    // The same merges of the same weights through the same kernels.
    expect(Buffer.from(got).equals(Buffer.from(expected))).toBe(true);
  });
});
