// `sdxl-turbo tune` and the stored table in a generation: tune writes a table of the run's
// calls; loadPipeline applies a stored table (the generation dispatches the stored variants),
// `tune: false` / --no-tune ignores it, a corrupt one warns and changes nothing; bad flags exit 2.

import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPipeline } from '../../src/index.js';
import { specializationKey } from '../../src/gpu/pipeline-cache.js';
import type { Dispatch, WebGpuRuntime } from '../../src/gpu/runtime.js';
import { adapterHash, parseTuningTable, serializeTuningTable, TUNING_TABLE_VERSION, type TuningTable } from '../../src/gpu/tuning-table.js';
import { MATMUL_TILES } from '../../src/ops/matmul.js';
import { observeCalls, tuneRun } from '../../src/pipeline/tune.js';
import { expectUsageError, runMain } from '../cli/run.js';
import { FIXTURES, readConfigs, TINY } from '../helpers/fixtures.js';
import { testGpu } from '../helpers/gpu.js';

const F32 = ['--dtype', 'f32'];
let dir: string;
beforeAll(async () => {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  dir = await mkdtemp(join(tmpdir(), 'sdxl-tune-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sdxl-turbo tune', () => {
  it('measures the filtered calls of the run and stores them for this adapter', async () => {
    const tuningDir = join(dir, 'cli');
    // One call (the pooled text embedding's projection, 1 row) keeps the compiles few.
    const run = await runMain(['tune', '-m', TINY, '-W', '64', '-H', '64', ...F32, '--reps', '1', '--budget', '0', '--filter', '1×32→20', '--tuning-dir', tuningDir]);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    const stored = run.out.find((l) => l.startsWith('stored '))!;
    expect(stored).toMatch(/^stored 1 choice\(s\) in .*\.json \(1 in all\)$/);
    const path = stored.match(/ in (\S+\.json) /)![1]!;
    const table = parseTuningTable(await readFile(path, 'utf8'), path);
    expect(path).toBe(join(tuningDir, `${adapterHash(table.adapter)}.json`));
    // The entry is the observed call's on this device (its limits decide the candidates): same op
    // id and key, a measured candidate chosen.
    const calls = await observeCalls(readConfigs(TINY), tuneRun({ width: 64, height: 64 }), 'f32', { limits: (await testGpu()).limits, f16: false, subgroups: false });
    const wanted = calls.filter((c) => c.call.label.includes('1×32→20'));
    expect(wanted).toHaveLength(1);
    const { call } = wanted[0]!;
    const entry = table.entries[`${call.op.id}|${call.key}`]!;
    expect(Object.keys(table.entries)).toEqual([`${call.op.id}|${call.key}`]);
    expect(Object.keys(entry.ms).sort()).toEqual([...call.candidates].sort());
    expect(entry.ms[entry.variant]).toBe(Math.min(...Object.values(entry.ms)));
  }, 120_000);

  it('--time-limit stores the calls measured in time and counts the rest, which keep their heuristic', async () => {
    const tuningDir = join(dir, 'time-limit');
    // 1 ms: the first call starts within it, none after it (each call compiles its variants).
    const run = await runMain(['tune', '-m', TINY, '-W', '64', '-H', '64', ...F32, '--reps', '1', '--budget', '0', '--filter', '→', '--time-limit', '0.001', '--tuning-dir', tuningDir]);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    const calls = await observeCalls(readConfigs(TINY), tuneRun({ width: 64, height: 64 }), 'f32', { limits: (await testGpu()).limits, f16: false, subgroups: false });
    const total = calls.filter((c) => c.call.label.includes('→')).length;
    expect(total).toBeGreaterThan(1);
    expect(run.out).toContain(`64×64, f32: ${total} distinct tunable call(s)`);
    const count = (prefix: string): number => Number(run.out.find((l) => l.startsWith(prefix))?.match(/(\d+) (choice|call)/)?.[1]);
    const stored = count('stored ');
    const unmeasured = count('not measured: ');
    expect(unmeasured).toBeGreaterThan(0);
    expect(stored + unmeasured).toBe(total); // every tiny Linear has a working variant
  }, 120_000);

  it('needs only the configs: a folder without weights (the real SDXL-Turbo layout) is dry-run', async () => {
    const layout = join(FIXTURES, 'sdxl-turbo-layout');
    const run = await runMain(['tune', '-m', layout, '-W', '64', '-H', '64', ...F32, '--filter', 'no call has this label', '--tuning-dir', join(dir, 'layout')]);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.out).toContain('64×64, f32: 0 distinct tunable call(s)');
  });

  it.each([
    [['--reps', '0'], '--reps'],
    [['--budget', 'soon'], '--budget'],
    [['--time-limit', '0'], '--time-limit'],
    [['--time-limit', 'soon'], '--time-limit'],
    [['--width', '63'], '--width'],
    [['--batch', '1.5'], '--batch'],
    [['--dtype', 'f8'], '--dtype'],
    [['--weights', 'q4'], '--weights'],
    [['--bogus'], '--bogus'],
  ])('%j exits 2 naming %s', async (args, flag) => {
    expectUsageError(await runMain(['tune', '-m', TINY, '--tuning-dir', join(dir, 'bad'), ...args]), flag);
  });

  it('needs --model', async () => {
    expectUsageError(await runMain(['tune', '-W', '64', '-H', '64']), '--model');
  });
});

describe('a generation with a stored table', () => {
  const tuningDir = (name: string): string => join(dir, name);
  // large8 has the same block as large: COLS tells them apart (a CPU adapter's heuristic is large8).
  const large = [`COLS=${MATMUL_TILES.large.cols}`, `TILE_K=${MATMUL_TILES.large.k},TILE_M=${MATMUL_TILES.large.m},TILE_N=${MATMUL_TILES.large.n}`];
  const options = { prompt: 'a boat', seed: 3, width: 64, height: 64 };

  /** Generates with `load`'s options; returns the image and the pipelines its dispatches used. */
  async function generate(load: Parameters<typeof loadPipeline>[1]): Promise<{ data: Uint8Array; kernels: Set<string>; tuned: number; described: string }> {
    const pipeline = await loadPipeline(TINY, { dtype: 'f32', ...load });
    try {
      const gpu = pipeline.gpu as WebGpuRuntime;
      const kernels = new Set<string>();
      const dispatch = gpu.dispatch.bind(gpu);
      gpu.dispatch = <K extends string>(d: Dispatch<K>): void => {
        kernels.add(specializationKey(d.kernel, d.defines));
        dispatch(d);
      };
      const { images } = await pipeline.generate(options);
      return { data: images[0]!.data, kernels, tuned: gpu.tuning.size, described: pipeline.describe().join('\n') };
    } finally {
      await pipeline.dispose();
    }
  }
  const usesLarge = (kernels: Set<string>): boolean => [...kernels].some((k) => k.startsWith('matmul(') && large.every((define) => k.includes(define)));

  let untuned: Awaited<ReturnType<typeof generate>>;
  let table: TuningTable;
  beforeAll(async () => {
    untuned = await generate({ tuningDir: tuningDir('empty') });
    // 'large' stored for every call that offers it and does not pick it.
    const calls = await observeCalls(readConfigs(TINY), tuneRun({ width: 64, height: 64 }), 'f32', { limits: (await testGpu()).limits, f16: false, subgroups: false });
    const switched = calls.filter(({ call }) => call.op.name === 'matmul' && call.heuristic !== 'large' && call.candidates.includes('large'));
    const pipeline = await loadPipeline(TINY, { dtype: 'f32', tune: false });
    const adapter = pipeline.gpu.adapter;
    await pipeline.dispose();
    table = { version: TUNING_TABLE_VERSION, adapter, entries: Object.fromEntries(switched.map(({ call }) => [`${call.op.id}|${call.key}`, { label: call.label, variant: 'large', ms: {} }])) };
    for (const name of ['tuned', 'corrupt']) {
      await mkdir(tuningDir(name), { recursive: true });
      await writeFile(join(tuningDir(name), `${adapterHash(adapter)}.json`), name === 'tuned' ? serializeTuningTable(table) : '{"version": 1, "entr');
    }
  }, 120_000);

  it('dispatches the stored variants, and the image is the untuned one', async () => {
    expect(untuned.tuned).toBe(0);
    expect(usesLarge(untuned.kernels)).toBe(false);
    const tuned = await generate({ tuningDir: tuningDir('tuned') });
    expect(tuned.tuned).toBe(Object.keys(table.entries).length);
    expect(tuned.described).toContain(`kernel variants: ${tuned.tuned} stored choice(s)`);
    expect(usesLarge(tuned.kernels)).toBe(true);
    // Every tile sums each output's k products in the same order in f32: bit-identical.
    expect(Buffer.from(tuned.data).equals(Buffer.from(untuned.data))).toBe(true);
  }, 120_000);

  it('tune: false ignores the table', async () => {
    const ignored = await generate({ tuningDir: tuningDir('tuned'), tune: false });
    expect(ignored.tuned).toBe(0);
    expect(ignored.kernels).toEqual(untuned.kernels);
  }, 120_000);

  it('a corrupt table: one warning naming the file, then the built-in choices', async () => {
    const warnings: string[] = [];
    const corrupt = await generate({ tuningDir: tuningDir('corrupt'), onWarning: (w) => warnings.push(w) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(join(tuningDir('corrupt'), ''));
    expect(warnings[0]).toContain('not JSON');
    expect(corrupt.kernels).toEqual(untuned.kernels);
    expect(Buffer.from(corrupt.data).equals(Buffer.from(untuned.data))).toBe(true);
  }, 120_000);

  it('--no-tune on generate ignores the table', async () => {
    const out = join(dir, 'no-tune.png');
    const run = await runMain(['generate', '-m', TINY, '-p', 'a boat', '--seed', '3', '-W', '64', '-H', '64', ...F32, '--tuning-dir', tuningDir('corrupt'), '--no-tune', '-o', out, '--metadata', 'none']);
    // The corrupt table would warn if it were read.
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    const warned = await runMain(['generate', '-m', TINY, '-p', 'a boat', '--seed', '3', '-W', '64', '-H', '64', ...F32, '--tuning-dir', tuningDir('corrupt'), '-o', out, '--metadata', 'none']);
    expect(warned.code).toBe(0);
    expect(warned.err).toHaveLength(1);
    expect(warned.err[0]).toMatch(/^sdxl-turbo: warning: ignoring the tuning table .*not JSON/);
  }, 120_000);
});
