// Soak benchmark (Node): many generations in one process on one pipeline — sizes in turn,
// image-to-image mixed in, some aborted at a progress event — then load → generate → dispose
// cycles, recording after each the process's RSS, its open file descriptors (memfds apart) and
// the buffer pool's live and idle bytes. Flat curves mean nothing leaks per run or per load.
// `npm run bench:soak -- --help`. Not part of `npm test` (BENCHMARKS.md has results).

import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadPipeline, type Pipeline } from '../src/index.js';
import type { ProgressEvent } from '../src/pipeline/options.js';
import { markdownTable } from './bench-report.js';

const USAGE = `npm run bench:soak -- [options]
  --model DIR        a diffusers folder (default test/fixtures/tiny-sdxl)
  --runs N           generations on one pipeline (default 100)
  --cycles N         then N load → generate → dispose cycles (default 10)
  --sizes LIST       comma-separated WxH sizes taken in turn (default 16 sizes from 48² to 112×96)
  --abort-every N    every Nth generation is aborted at a progress event (default 5)
  --img2img-every N  every Nth generation is image-to-image (default 3)
  --json FILE        also write every sample as JSON`;

interface Sample {
  readonly phase: 'run' | 'cycle';
  readonly index: number;
  readonly what: string;
  readonly rssMiB: number;
  readonly fds: number;
  readonly memfds: number;
  readonly poolLiveBytes: number;
  readonly poolIdleBytes: number;
  readonly ms: number;
}

const DEFAULT_SIZES = [48, 56, 64, 72, 80, 88, 96, 104].flatMap((w, i) => [`${w}x${64 + 8 * (i % 4)}`, `${w + 8}x${w}`]).slice(0, 16);

function openFds(): { fds: number; memfds: number } {
  const links = readdirSync('/proc/self/fd').map((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return ''; // the directory's own descriptor, closed by now
    }
  });
  return { fds: links.length, memfds: links.filter((l) => l.startsWith('/memfd:')).length };
}

/** Lets collectable memory go before a sample (with --expose-gc; the npm script passes it). */
async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 20));
  (globalThis as { gc?: () => void }).gc?.();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'test/fixtures/tiny-sdxl' },
      runs: { type: 'string', default: '100' },
      cycles: { type: 'string', default: '10' },
      sizes: { type: 'string' },
      'abort-every': { type: 'string', default: '5' },
      'img2img-every': { type: 'string', default: '3' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return console.log(USAGE);
  const count = (name: string, v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: expected a whole number, got ${v}`);
    return n;
  };
  const runs = count('runs', values.runs);
  const cycles = count('cycles', values.cycles);
  const abortEvery = count('abort-every', values['abort-every']);
  const img2imgEvery = count('img2img-every', values['img2img-every']);
  const sizes = (values.sizes?.split(',') ?? DEFAULT_SIZES).map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s.trim());
    if (!m) throw new Error(`--sizes: ${s} is not WxH`);
    return { width: Number(m[1]), height: Number(m[2]) };
  });
  const model = values.model;
  const samples: Sample[] = [];
  let pipeline: Pipeline | null = null;
  const sample = async (phase: Sample['phase'], index: number, what: string, ms: number): Promise<void> => {
    await settle();
    const stats = pipeline?.usable ? pipeline.gpu.pool.stats : { liveBytes: 0, pooledBytes: 0 };
    samples.push({ phase, index, what, rssMiB: process.memoryUsage().rss / 2 ** 20, ...openFds(), poolLiveBytes: stats.liveBytes, poolIdleBytes: stats.pooledBytes, ms });
  };

  const generateOne = async (p: Pipeline, i: number): Promise<string> => {
    const { width, height } = sizes[i % sizes.length]!;
    const image = img2imgEvery > 0 && i % img2imgEvery === img2imgEvery - 1;
    const abort = abortEvery > 0 && i % abortEvery === abortEvery - 1;
    const controller = new AbortController();
    // The abort lands at a progress event chosen by the run's index: each stage in turn.
    const events = image ? ['encode-prompt', 'encode-image', 'denoise', 'decode'] : ['encode-prompt', 'denoise', 'decode'];
    const abortAt = events[Math.floor(i / abortEvery) % events.length]!;
    const options = {
      prompt: `soak run ${i}`,
      seed: i,
      steps: 2,
      width,
      height,
      signal: controller.signal,
      onProgress: (e: ProgressEvent) => {
        if (abort && e.stage === abortAt) controller.abort();
      },
    };
    const what = `${width}×${height} ${image ? 'i2i' : 't2i'}${abort ? ` aborted at ${abortAt}` : ''}`;
    const pixels = { width, height, data: new Uint8Array(width * height * 3).fill(128) };
    try {
      await (image ? p.imageToImage({ ...options, image: pixels, strength: 0.6 }) : p.generate(options));
      if (abort) throw new Error(`run ${i} (${what}) finished although aborted`);
    } catch (e) {
      if (!(abort && controller.signal.aborted && e === controller.signal.reason)) throw e;
    }
    return what;
  };

  await sample('run', 0, 'start', 0);
  pipeline = await loadPipeline(model);
  log(`adapter: ${pipeline.gpu.adapterName} (shader-f16: ${pipeline.gpu.f16 ? 'yes' : 'no'}); model ${model}, compute ${pipeline.dtype}`);
  await sample('run', 0, 'loaded', 0);
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const what = await generateOne(pipeline, i);
    await sample('run', i + 1, what, performance.now() - t0);
  }
  await pipeline.dispose();
  pipeline = null;
  await sample('cycle', 0, 'disposed', 0);
  for (let c = 0; c < cycles; c++) {
    const t0 = performance.now();
    pipeline = await loadPipeline(model);
    const what = await generateOne(pipeline, c);
    await pipeline.dispose();
    pipeline = null;
    await sample('cycle', c + 1, `load, ${what}, dispose`, performance.now() - t0);
  }

  const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(2);
  const rows = (phase: Sample['phase'], every: number): string[][] =>
    samples
      .filter((s) => s.phase === phase && (s.index % every === 0 || s.index === (phase === 'run' ? runs : cycles) || s.index <= 1))
      .map((s) => [String(s.index), s.what, s.rssMiB.toFixed(1), String(s.fds), String(s.memfds), String(s.poolLiveBytes), mib(s.poolIdleBytes)]);
  const header = ['#', 'generation', 'RSS MiB', 'fds', 'memfds', 'pool live B', 'pool idle MiB'];
  log(`\nGenerations on one pipeline (${runs}; ${sizes.length} sizes in turn, 1 in ${img2imgEvery} image-to-image, 1 in ${abortEvery} aborted):`);
  log(markdownTable(header, rows('run', 10), new Set([0, 2, 3, 4, 5, 6])));
  log(`\nload → generate → dispose cycles (${cycles}):`);
  log(markdownTable(['#', 'cycle', 'RSS MiB', 'fds', 'memfds', 'pool live B', 'pool idle MiB'], rows('cycle', 1), new Set([0, 2, 3, 4, 5, 6])));
  const runSamples = samples.filter((s) => s.phase === 'run' && s.index > 0);
  const tenth = Math.max(1, Math.floor(runSamples.length / 10));
  const slope = (xs: Sample[], f: (s: Sample) => number): string => (xs.length < 2 ? 'n/a' : ((f(xs.at(-1)!) - f(xs[0]!)) / (xs.length - 1)).toFixed(3));
  const second = runSamples.slice(runSamples.length >> 1);
  const cycleSamples = samples.filter((s) => s.phase === 'cycle' && s.index > 0);
  log('\nSummary:');
  log(`- RSS over the second half of the generations: ${slope(second, (s) => s.rssMiB)} MiB per generation (first tenth ${avg(runSamples.slice(0, tenth), (s) => s.rssMiB)}, last tenth ${avg(runSamples.slice(-tenth), (s) => s.rssMiB)} MiB)`);
  log(`- pool idle bytes: max ${mib(Math.max(...runSamples.map((s) => s.poolIdleBytes)))} MiB, last ${mib(runSamples.at(-1)?.poolIdleBytes ?? 0)} MiB; live bytes after every run: ${[...new Set(runSamples.map((s) => s.poolLiveBytes))].join(', ')} B`);
  log(`- fds after the generations: ${[...new Set(runSamples.map((s) => s.fds))].join(', ')}; memfds: ${[...new Set(runSamples.map((s) => s.memfds))].join(', ')}`);
  log(`- load/dispose cycles: RSS ${slope(cycleSamples.slice(cycleSamples.length >> 1), (s) => s.rssMiB)} MiB per cycle over the second half; fds ${[...new Set(cycleSamples.map((s) => s.fds))].join(', ')}; memfds ${[...new Set(cycleSamples.map((s) => s.memfds))].join(', ')}`);
  if (values.json) writeFileSync(values.json, JSON.stringify({ model, samples }, null, 1));
}

function avg(xs: readonly Sample[], f: (s: Sample) => number): string {
  return (xs.reduce((sum, s) => sum + f(s), 0) / Math.max(1, xs.length)).toFixed(1);
}

function log(line = ''): void {
  console.log(line);
}

main().catch((e: unknown) => {
  console.error(`bench-soak: ${(e as Error).message}`);
  process.exitCode = 1;
});
