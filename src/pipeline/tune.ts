// `tune`: measures, on this adapter, every variant of each distinct tunable call a generation of
// one size makes, and keeps the fastest (Node: `sdxl-turbo tune`; browser: the `tune` export).
// 1. The calls: the generation dry-run (dry-run.ts) on a recording device shaped like this one,
//    whose Tuning observes every launcher's gpu.tuning.choose(...); deduplicated by op id and
//    shape key, counted per run.
// 2. Each call alone on the real device: its inputs prepared once, every candidate run once
//    (compiles its pipeline, and a variant that fails is dropped and reported), then rounds over
//    the candidates until `reps` rounds or the call's time budget is spent (at least one round),
//    timed by GPU timestamps where the adapter has timestamp-query, else by the wall clock.
// 3. The fastest median wins; the result is a TuningTable (tuning-table.ts) to store.

import { checkInteger, checkSize, checkWeightsOption, type ComputeDType } from './options.js';
import { usage } from '../errors.js';
import { timeOnce, median } from '../gpu/timing.js';
import type { Gpu } from '../gpu/runtime.js';
import { type TunableCall, Tuning } from '../gpu/tuning.js';
import { TUNING_TABLE_VERSION, type TunedEntry, type TuningTable } from '../gpu/tuning-table.js';
import { markdownTable } from '../markdown.js';
import { type PipelineConfigs, type RunShape, shapeInput } from './dry-run.js';
import { checkLimits } from './preflight.js';
import { pickDtype } from './sdxl-turbo.js';

export interface TuneOptions {
  /** The image size whose calls are tuned (multiples of 8). */
  readonly width: number;
  readonly height: number;
  /** Images per run (default 1). */
  readonly batch?: number;
  /** Compute precision (default f16 where the adapter has shader-f16). */
  readonly dtype?: ComputeDType;
  /** 'q8': the 8-bit weight specializations (default float). */
  readonly weights?: 'q8';
  /** Also the VAE encode of image-to-image (default false). */
  readonly imageToImage?: boolean;
  /** Milliseconds of timed rounds per call, all its candidates together (default 2000); the
   *  first round always runs. */
  readonly budgetMs?: number;
  /** Timed rounds per call at most (default 5). */
  readonly reps?: number;
  /** Only the calls whose label contains this text (default all). */
  readonly filter?: string;
  /** Start measuring no call after this many milliseconds; the calls measured by then are the
   *  result, the others are counted in `unmeasured` (default: no limit). */
  readonly timeLimitMs?: number;
  readonly onProgress?: (progress: TuneProgress) => void;
  readonly signal?: AbortSignal;
}

export interface TuneProgress {
  /** Calls measured so far, of `total`. */
  readonly done: number;
  readonly total: number;
  /** The call measured next (done < total) or last. */
  readonly label: string;
}

/** One distinct call as measured. */
export interface TunedCall {
  /** `${op.id}|${key}`: the table's key. */
  readonly id: string;
  readonly label: string;
  /** How many times one run makes it. */
  readonly calls: number;
  readonly heuristic: string;
  readonly candidates: readonly string[];
  /** Median milliseconds of each candidate that ran. */
  readonly ms: Readonly<Record<string, number>>;
  /** Why a candidate (or, under '*', the whole call) did not run. */
  readonly errors: Readonly<Record<string, string>>;
  /** The fastest candidate; null when none ran. */
  readonly best: string | null;
  /** Timed rounds done. */
  readonly rounds: number;
}

export interface TuneResult {
  readonly timer: 'timestamps' | 'wall clock';
  readonly calls: readonly TunedCall[];
  /** Calls left unmeasured when `timeLimitMs` ran out (they keep their heuristic). */
  readonly unmeasured: number;
  /** The choices measured, to store (calls with no successful candidate are left out). */
  readonly table: TuningTable;
}

/** A distinct tunable call of a run, and how often the run makes it. */
export interface ObservedCall {
  readonly call: TunableCall;
  readonly count: number;
}

/** The run `options` describe, checked (UsageErrors name the option). */
export function tuneRun(options: TuneOptions): RunShape {
  return {
    width: checkSize('width', options.width),
    height: checkSize('height', options.height),
    batch: checkInteger('batch', options.batch ?? 1, 1, 64),
    steps: 1, // every step makes the same calls
    imageToImage: options.imageToImage ?? false,
    ...(checkWeightsOption(options.weights) ? { weights: 'q8' as const } : {}),
  };
}

/** Each distinct tunable call of `run` on a device like `gpu`, in first-call order. */
export async function observeCalls(configs: PipelineConfigs, run: RunShape, dtype: ComputeDType, gpu: Pick<Gpu, 'limits' | 'f16' | 'subgroups'> & { readonly tuning?: Pick<Tuning, 'cpu'> }): Promise<ObservedCall[]> {
  const seen = new Map<string, { call: TunableCall; count: number }>();
  // Heuristic choices only (the device's kind of heuristic): what the calls are does not depend on what is stored.
  const tuning = new Tuning(gpu.tuning?.cpu);
  tuning.observe((call) => {
    const id = `${call.op.id}|${call.key}`;
    const entry = seen.get(id);
    if (entry) entry.count++;
    else seen.set(id, { call, count: 1 });
  });
  await checkLimits(configs, shapeInput(configs, run, dtype), { limits: gpu.limits, f16: gpu.f16, subgroups: gpu.subgroups, tuning });
  return [...seen.values()];
}

/** Measures every candidate of each of `calls` on `gpu` (see the file's header). */
export async function measureCalls(gpu: Gpu, calls: readonly ObservedCall[], options: Pick<TuneOptions, 'budgetMs' | 'reps' | 'timeLimitMs' | 'onProgress' | 'signal'> = {}): Promise<TuneResult> {
  const budgetMs = options.budgetMs ?? 2000;
  const reps = options.reps ?? 5;
  if (!(budgetMs >= 0)) usage(`budgetMs must be ≥ 0, got ${budgetMs}`, 'budgetMs');
  checkInteger('reps', reps, 1);
  const { timeLimitMs } = options;
  if (timeLimitMs !== undefined && !(timeLimitMs > 0)) usage(`timeLimitMs must be > 0, got ${timeLimitMs}`, 'timeLimitMs');
  const deadline = performance.now() + (timeLimitMs ?? Infinity);
  const wasProfiling = gpu.profiler !== null;
  const timestamps = gpu.setProfiling(true);
  const results: TunedCall[] = [];
  try {
    for (const [i, { call, count }] of calls.entries()) {
      options.signal?.throwIfAborted();
      if (performance.now() > deadline) break;
      options.onProgress?.({ done: i, total: calls.length, label: call.label });
      results.push({ id: `${call.op.id}|${call.key}`, label: call.label, calls: count, heuristic: call.heuristic, candidates: call.candidates, ...(await measureCall(gpu, call, reps, budgetMs)) });
    }
    options.onProgress?.({ done: calls.length, total: calls.length, label: calls.at(-1)?.call.label ?? '' });
  } finally {
    gpu.setProfiling(wasProfiling);
    await gpu.releaseIdleMemory();
  }
  const entries: Record<string, TunedEntry> = {};
  for (const r of results) if (r.best !== null) entries[r.id] = { label: r.label, variant: r.best, ms: r.ms };
  return { timer: timestamps ? 'timestamps' : 'wall clock', calls: results, unmeasured: calls.length - results.length, table: { version: TUNING_TABLE_VERSION, adapter: gpu.adapter, entries } };
}

/** The calls of `options`' run on `configs`' model, measured on `gpu`. */
export async function tune(gpu: Gpu, configs: PipelineConfigs, options: TuneOptions): Promise<TuneResult> {
  const run = tuneRun(options);
  const calls = await observeCalls(configs, run, pickDtype(gpu, options.dtype), gpu);
  const { filter } = options;
  return measureCalls(gpu, filter === undefined ? calls : calls.filter((c) => c.call.label.includes(filter)), options);
}

async function measureCall(gpu: Gpu, call: TunableCall, reps: number, budgetMs: number): Promise<Pick<TunedCall, 'ms' | 'errors' | 'best' | 'rounds'>> {
  const errors: Record<string, string> = {};
  const fail = (variant: string, e: unknown): void => {
    if (gpu.lost) throw gpu.lost; // nothing after this would run: not the variant's fault
    errors[variant] = e instanceof Error ? e.message : String(e);
  };
  let prepared;
  try {
    prepared = call.prepare(gpu);
  } catch (e) {
    fail('*', e);
    return { ms: {}, errors, best: null, rounds: 0 };
  }
  const samples = new Map<string, number[]>();
  let rounds = 0;
  try {
    // Warm-up: compiles each variant's pipeline, outside the budget.
    for (const v of call.candidates) {
      try {
        await timeOnce(gpu, () => prepared.run(v));
        samples.set(v, []);
      } catch (e) {
        fail(v, e);
      }
    }
    const start = performance.now();
    while (samples.size > 0 && rounds < reps && (rounds === 0 || performance.now() - start <= budgetMs)) {
      for (const [v, times] of samples) {
        try {
          times.push(await timeOnce(gpu, () => prepared.run(v)));
        } catch (e) {
          fail(v, e);
          samples.delete(v);
        }
      }
      rounds++;
    }
  } finally {
    prepared.dispose();
  }
  const ms = Object.fromEntries([...samples].map(([v, times]) => [v, median(times)]));
  // Ties keep the launcher's order (its heuristic first where it is first).
  const best = Object.keys(ms).reduce<string | null>((b, v) => (b === null || ms[v]! < ms[b]! ? v : b), null);
  return { ms, errors, best, rounds };
}

/** The result for people: a Markdown table of the calls and a line of sums. */
export function formatTuneResult(result: TuneResult): string[] {
  const f = (ms: number | undefined): string => (ms === undefined ? '-' : ms >= 100 ? ms.toFixed(0) : ms.toPrecision(3));
  const rows = result.calls.map((c) => {
    const failed = Object.entries(c.errors).map(([v, e]) => `${v === '*' ? 'call' : v} failed: ${e.split('\n')[0]}`);
    return [c.label, String(c.calls), c.heuristic, f(c.ms[c.heuristic]), c.best ?? '-', f(c.best === null ? undefined : c.ms[c.best]), failed.join('; ')];
  });
  const table = markdownTable(['call', 'calls/run', 'heuristic', 'ms', 'tuned', 'ms', 'notes'], rows, new Set([1, 3, 5]));
  const both = result.calls.filter((c) => c.best !== null && c.ms[c.heuristic] !== undefined);
  const sum = (pick: (c: TunedCall) => number): number => both.reduce((s, c) => s + c.calls * pick(c), 0);
  const heuristic = sum((c) => c.ms[c.heuristic]!);
  const tuned = sum((c) => c.ms[c.best!]!);
  return [
    table,
    `Σ calls × median over ${both.length} call(s) (${result.timer}): heuristic ${f(heuristic)} ms, tuned ${f(tuned)} ms${tuned > 0 ? ` (${(heuristic / tuned).toFixed(2)}×)` : ''}`,
    ...(result.unmeasured > 0 ? [`not measured: ${result.unmeasured} call(s), the time limit reached (they keep their heuristic)`] : []),
  ];
}
