// Tuning (src/pipeline/tune.ts, src/gpu/tuning-table.ts, src/node/tuning-store.ts): which calls a
// run makes, how a stored table reaches the dry run's pipelines, what is ignored (another kernel
// hash, a corrupt file), and the measuring loop's handling of failing variants and memory.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecordingGpu } from '../../src/gpu/recording.js';
import { type TunableCall, tunableOp } from '../../src/gpu/tuning.js';
import { applyStoredTuning, loadTuningTable, mergeTuningTables, saveTuningTable, serializeTuningTable, TUNING_TABLE_VERSION, type TuningTable } from '../../src/gpu/tuning-table.js';
import { nodeTuningStore, tuningDir } from '../../src/node/tuning-store.js';
import { MATMUL_TILES } from '../../src/ops/matmul.js';
import { synthetic } from '../../src/ops/synthetic.js';
import { dryRun, shapeInput } from '../../src/pipeline/dry-run.js';
import { measureCalls, observeCalls, type ObservedCall, tuneRun } from '../../src/pipeline/tune.js';
import { readConfigs, TINY } from '../helpers/fixtures.js';
import { testGpu } from '../helpers/gpu.js';

const configs = readConfigs(TINY);
const run = tuneRun({ width: 64, height: 64 });
const input = shapeInput(configs, run, 'f32');
const device = { f16: false, subgroups: false };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sdxl-tune-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The matmul specializations (tile sizes) a dry run of `input` compiles under `gpu`'s tuning. */
async function matmulTiles(gpu: RecordingGpu): Promise<Set<string>> {
  const { specializations } = await dryRun(configs, input, { ...device, tuning: gpu.tuning });
  return new Set(specializations.filter((s) => s.kernel.name === 'matmul').map((s) => `${s.defines.TILE_M}×${s.defines.TILE_N}×${s.defines.TILE_K}`));
}

/** A table of `gpu`'s adapter with `entries`. */
function table(gpu: RecordingGpu, entries: TuningTable['entries']): TuningTable {
  return { version: TUNING_TABLE_VERSION, adapter: gpu.adapter, entries };
}

describe('the calls of a run and the stored choices (dry run, no GPU)', () => {
  let calls: ObservedCall[];
  beforeAll(async () => {
    calls = await observeCalls(configs, run, 'f32', { ...device, limits: new RecordingGpu().limits });
  });

  it('lists each distinct tunable call once, with its count, valid heuristic and candidates', () => {
    expect(calls.length).toBeGreaterThan(0);
    const ids = calls.map((c) => `${c.call.op.id}|${c.call.key}`);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { call, count } of calls) {
      expect(count).toBeGreaterThanOrEqual(1);
      expect(call.candidates).toContain(call.heuristic);
    }
  });

  it('a stored non-heuristic choice shows in the pipelines the run compiles; another kernel hash is ignored', async () => {
    // Every call that offers 'large' but does not pick it gets 'large' stored.
    const large = `${MATMUL_TILES.large.m}×${MATMUL_TILES.large.n}×${MATMUL_TILES.large.k}`;
    const switched = calls.filter(({ call }) => call.op.name === 'matmul' && call.heuristic !== 'large' && call.candidates.includes('large'));
    expect(switched.length).toBeGreaterThan(0);
    const entries = (opId: (id: string) => string): TuningTable['entries'] =>
      Object.fromEntries(switched.map(({ call }) => [`${opId(call.op.id)}|${call.key}`, { label: call.label, variant: 'large', ms: {} }]));

    const heuristic = new RecordingGpu();
    const baseline = await matmulTiles(heuristic);
    // The tiny model's calls are small: the heuristic never takes the large tile.
    expect(baseline.has(large)).toBe(false);

    const store = nodeTuningStore(join(dir, 'choices'));
    const tuned = new RecordingGpu();
    await saveTuningTable(store, table(tuned, entries((id) => id)));
    const warnings: string[] = [];
    expect(await applyStoredTuning(tuned, store, (w) => warnings.push(w))).toBe(switched.length);
    expect(warnings).toEqual([]);
    expect((await matmulTiles(tuned)).has(large)).toBe(true);

    // The same choices measured on other kernel sources (another hash in the op id): unused.
    const stale = nodeTuningStore(join(dir, 'stale'));
    await saveTuningTable(stale, table(tuned, entries((id) => id.replace(/@[0-9a-f.]+$/, '@00000000.00000000'))));
    const staleGpu = new RecordingGpu();
    await applyStoredTuning(staleGpu, stale, (w) => warnings.push(w));
    expect(await matmulTiles(staleGpu)).toEqual(baseline);
    expect(warnings).toEqual([]);
  });

  it('a corrupt, foreign or other-version table: one warning naming the file, and no choice applied', async () => {
    const gpu = new RecordingGpu();
    const store = nodeTuningStore(join(dir, 'corrupt'));
    const path = store.where(gpu.adapter);
    const good = table(gpu, { 'matmul@1|k': { label: 'x', variant: 'large', ms: { large: 1 } } });
    const cases: Array<[string, string]> = [
      ['{"version": 1, "adapter": ', 'not JSON'],
      [serializeTuningTable({ ...good, version: 2 as 1 }), 'version 2'],
      [serializeTuningTable({ ...good, adapter: { ...good.adapter, device: 'another card' } }), 'not this adapter'],
      [JSON.stringify({ ...good, entries: { 'matmul@1|k': { variant: 7 } } }), 'entry'],
    ];
    for (const [text, why] of cases) {
      await saveTuningTable(store, good);
      await applyStoredTuning(gpu, store, () => {});
      expect(gpu.tuning.size).toBe(1);
      await writeFile(path, text);
      const warnings: string[] = [];
      expect(await applyStoredTuning(gpu, store, (w) => warnings.push(w))).toBe(0);
      expect(warnings, why).toHaveLength(1);
      expect(warnings[0]).toContain(path);
      expect(warnings[0]).toContain(why);
    }
  });

  it('tuning another size adds to the table; an op measured under new kernel sources drops its stale entries', async () => {
    const gpu = new RecordingGpu();
    const store = nodeTuningStore(join(dir, 'merge'));
    const e = (variant: string): TuningTable['entries'][string] => ({ label: variant, variant, ms: { [variant]: 1 } });
    await saveTuningTable(store, table(gpu, { 'matmul@a|64': e('small'), 'conv2d@c|64': e('x') }));
    await saveTuningTable(store, table(gpu, { 'matmul@a|128': e('large') }));
    expect(Object.keys((await loadTuningTable(store, gpu.adapter))!.entries).sort()).toEqual(['conv2d@c|64', 'matmul@a|128', 'matmul@a|64']);
    const merged = mergeTuningTables(await loadTuningTable(store, gpu.adapter), table(gpu, { 'matmul@b|64': e('medium') }));
    expect(Object.keys(merged.entries).sort()).toEqual(['conv2d@c|64', 'matmul@b|64']);
    // Written whole: the file parses and holds exactly what was saved last.
    expect(JSON.parse(await readFile(store.where(gpu.adapter), 'utf8')).entries).toEqual((await loadTuningTable(store, gpu.adapter))!.entries);
  });
});

describe('the Node store', () => {
  it('is the tuningDir option, else $SDXL_TURBO_TUNING_DIR, else $XDG_CACHE_HOME/sdxl-turbo/tuning, else ~/.cache/sdxl-turbo/tuning', () => {
    const saved = { dir: process.env.SDXL_TURBO_TUNING_DIR, cache: process.env.XDG_CACHE_HOME };
    const restore = (name: string, value: string | undefined): void => {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    };
    try {
      process.env.SDXL_TURBO_TUNING_DIR = '/env/tables';
      process.env.XDG_CACHE_HOME = '/xdg';
      expect(tuningDir('/option')).toBe('/option');
      expect(tuningDir()).toBe('/env/tables');
      delete process.env.SDXL_TURBO_TUNING_DIR;
      expect(tuningDir()).toBe('/xdg/sdxl-turbo/tuning');
      delete process.env.XDG_CACHE_HOME;
      expect(tuningDir()).toBe(join(homedir(), '.cache', 'sdxl-turbo', 'tuning'));
    } finally {
      restore('SDXL_TURBO_TUNING_DIR', saved.dir);
      restore('XDG_CACHE_HOME', saved.cache);
    }
  });
});

describe('measuring (real GPU)', () => {
  /** A tunable call that fills a buffer with synthetic values: 'a' and 'b' run, 'bad' throws. */
  function fakeCall(prepareFails = false): ObservedCall {
    const op = tunableOp('fake', []);
    const call: TunableCall = {
      op,
      key: prepareFails ? 'broken' : 'n=4096',
      label: 'fake fill',
      candidates: ['a', 'bad', 'b'],
      heuristic: 'a',
      prepare: (gpu) => {
        if (prepareFails) throw new Error('cannot prepare');
        const held = synthetic(gpu, 'tune.fake', [4096], 'f32');
        return {
          run: (v) => {
            if (v === 'bad') throw new Error('variant bad is invalid here');
            synthetic(gpu, 'tune.fake.out', [v === 'a' ? 4096 : 8192], 'f32').release();
          },
          dispose: () => held.release(),
        };
      },
    };
    return { call, count: 3 };
  }

  it('times every candidate that runs, reports the ones that fail, and frees what it made', async () => {
    const gpu = await testGpu();
    const live = gpu.pool.stats.liveBytes;
    const progress: number[] = [];
    const result = await measureCalls(gpu, [fakeCall(), fakeCall(true)], { reps: 2, budgetMs: 0, onProgress: (p) => progress.push(p.done) });
    expect(progress).toEqual([0, 1, 2]);
    const [ok, broken] = result.calls;
    expect(Object.keys(ok!.ms).sort()).toEqual(['a', 'b']);
    expect(ok!.errors.bad).toContain('variant bad is invalid here');
    expect(['a', 'b']).toContain(ok!.best);
    expect(ok!.rounds).toBe(1); // a zero budget still times one round
    expect(broken!.errors['*']).toContain('cannot prepare');
    expect(broken!.best).toBeNull();
    // Only calls with a measured choice are stored.
    expect(Object.keys(result.table.entries)).toEqual([ok!.id]);
    expect(result.table.entries[ok!.id]).toEqual({ label: 'fake fill', variant: ok!.best, ms: ok!.ms });
    expect(result.table.adapter).toEqual(gpu.adapter);
    expect(gpu.pool.stats.liveBytes).toBe(live);
    expect(gpu.profiler).toBeNull(); // profiling is switched back off
  });
});
