// Pipeline benchmark (Node): whole SdxlTurboPipeline generate() / imageToImage() runs with the
// wall-clock time of each stage, the GPU time of every kernel by stage and kernel family, and the
// GPU memory next to the memory plan's prediction. `npm run bench:pipeline -- --help`. Not part of
// `npm test` (BENCHMARKS.md has results and how to run it on a GPU).
//
// How it measures:
// - load: ModelFolder.open + SdxlTurboPipeline.load, once (--synthetic: weights generated on
//   the CPU as they upload, timed separately).
// - load compiles every pipeline of the benchmarked run (its dry run; createComputePipelineAsync,
//   in parallel); with --warm-up it also runs the benchmarked run once (PipelineOptions.warmUp:
//   the buffer pool grown, the denoising step recorded for replay). Then the first run after load (the pipelines,
//   buffers and bind groups it creates are printed: none beyond a warm run's when load covered
//   them), then --runs timed runs; each stage's time is
//   the pipeline's own `timings` (every stage ends with a GPU sync), the median over the timed
//   runs, next to the first run's and the ratio first / median (goal ≤ 1.1: no first-image
//   stall). The timed runs are not profiled.
// - then, where the adapter has timestamp-query, one profiled run: every dispatch in its own
//   compute pass between timestamps, attributed to the stage (and denoising step) that recorded
//   it. A kernel family is the kernel's name without its specialization.
// - memory: the weights' bytes as allocated, and the buffer pool's peak over the runs (the idle
//   staging buffers of load's dtype casts trimmed first; the first run grows the pool, the
//   others reuse it), against the memory plan of the run's dry run (src/pipeline/dry-run.ts).
// - encoding: the CPU time of recording a denoising step (from the previous step's progress event
//   to the step's GPU sync) with the step (scheduler and UNet) encoded eagerly and replayed
//   (src/gpu/replay.ts), the C allocator's work left by the previous step (timed apart), and the
//   bind groups and buffers each step creates.
// - --plan-only: the dry run's plan alone, from the configs (no GPU, no weights): how the 512²
//   table of BENCHMARKS.md is made.

import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { openNodeGpu } from '../src/gpu/node.js';
import { watchStages } from '../src/gpu/allocated.js';
import { applyStoredTuning } from '../src/gpu/tuning-table.js';
import { nodeTuningStore, tuningDir } from '../src/node/tuning-store.js';
import type { Profiler } from '../src/gpu/profiler.js';
import { replayBytes } from '../src/gpu/replay.js';
import type { WebGpuRuntime } from '../src/gpu/runtime.js';
import type { RgbImage } from '../src/image.js';
import { formatMemoryPlan, type NetworkMemory } from '../src/models/memory-plan.js';
import { withDefaults } from '../src/gpu/recording.js';
import { type PipelineConfigs, planMemory, shapeInput, UNBOUNDED } from '../src/pipeline/dry-run.js';
import { img2imgSteps } from '../src/pipeline/options.js';
import { describeChoice, formatBytes, parseByteSize, planBudget, type Residency } from '../src/pipeline/budget.js';
import { planRun } from '../src/pipeline/preflight.js';
import type { GenerateResult } from '../src/pipeline/sdxl-turbo.js';
import { SdxlTurboPipeline } from '../src/pipeline/sdxl-turbo.js';
import type { ProgressEvent, Stage } from '../src/pipeline/options.js';
import type { DType } from '../src/tensor.js';
import { BadOption, LAYOUT, MODEL_OPTIONS, modelFs, modelOptions, oneOf, openModelFolder, parseToolArgs, parseToolOptions, wholeOption } from './bench-model.js';
import { markdownTable, median } from './bench-report.js';

const DEFAULT_PROMPT = 'a lighthouse on a rocky coast at sunset';

const USAGE = `npm run bench:pipeline -- (--model DIR|ID|URL | --synthetic) [options]
  --model DIR|ID|URL   a diffusers SDXL(-Turbo) folder (e.g. test/fixtures/tiny-sdxl), a Hugging
                       Face repo id (downloaded to its cache, as the CLI does), a base URL, or a
                       single-file SDXL checkpoint (FILE.safetensors, run with the built-in configs)
  --synthetic          the real SDXL-Turbo architecture with the synthetic real-size weights
                       (${LAYOUT}; generated on the GPU while loading, ~7 GB of GPU memory)
  --cpu-synthetic      with --synthetic: generate them on the CPU and upload them instead
  --layout DIR         with --synthetic: another architecture, DIR holding its configs and a
                       weights-manifest.json of the same form (default ${LAYOUT}; the GPU
                       bundle's --small run uses the tiny fixture's, made by tools/gpu-bundle.mjs)
  --width W --height H image size (default 512×512; on a software adapter use small sizes)
  --steps N            denoising steps (default 1; image-to-image runs floor(N × strength))
  --dtype f16|f32      compute dtype of the text encoders and UNet (default f16 where the
                       adapter has shader-f16); the VAE runs in f32
  --variant fp16|fp32  which weight files of --model to read (default fp16 when present)
  --weights q8         8-bit Linear and conv weights in the text encoders and UNet (docs/Q8.md)
  --runs N             timed runs after the first run; medians reported (default 3)
  --encode-steps N     steps of the runs that time a step's CPU encoding, UNet eager and
                       replayed (--runs of each; steps 2…N timed; default 4, at least 2;
                       0 skips it: a memory run at real size needs no extra generations)
  --img2img            image-to-image from a generated picture (--strength, default 0.5)
  --strength S
  --prompt TEXT        (default "${DEFAULT_PROMPT}")
  --seed N             (default 0; every run uses it, so every run does the same work)
  --top N              kernel families listed for the UNet step (default 12)
  --no-profile         no per-kernel profile (and no profiled run)
  --json OUT           also write the results as JSON
  --plan-only          print the dry run's memory plan of --width × --height (text-to-image, the
                       VAE encode of image-to-image, and with --vae-max-mib N the decode with its
                       buffers capped at N MiB) as a Markdown table, from the configs of --model DIR
                       or --synthetic: no GPU, no weights (--dtype default f16)
  --vae-max-mib N
  --max-memory BYTES   a GPU memory budget (e.g. 6GB): the pipeline plans for it (see
                       src/pipeline/budget.ts); with --plan-only, the budget's choice (of
                       image-to-image with --img2img: the VAE encode tiled when it must be)
  --release-encoders   free the text encoders after encoding (PipelineOptions.releaseEncoders)
  --no-tune            ignore the kernel variants \`sdxl-turbo tune\` stored for this adapter
  --warm-up            load also runs the benchmarked run once (PipelineOptions.warmUp, as a
                       server would): the first run after load then costs what a warm one does
Run from the repository root.`;

// ---- options ----------------------------------------------------------------------------

interface Options {
  readonly model: string | null;
  /** --synthetic: the folder of configs and weights-manifest.json. */
  readonly layout: string;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly dtype: DType | undefined;
  readonly variant: 'fp16' | 'fp32' | undefined;
  readonly weights: 'q8' | undefined;
  readonly runs: number;
  readonly encodeSteps: number;
  readonly img2img: boolean;
  readonly strength: number;
  readonly prompt: string;
  readonly seed: number;
  readonly top: number;
  readonly profile: boolean;
  readonly json: string | null;
  readonly planOnly: boolean;
  readonly vaeMaxMiB: number | null;
  readonly maxMemory: number | undefined;
  readonly releaseEncoders: boolean;
  readonly warmUp: boolean;
  readonly tune: boolean;
  /** --synthetic weights generated on the CPU and uploaded (else made on the GPU). */
  readonly cpuSynthetic: boolean;
}


function parseOptions(argv: string[]): Options | null {
  const values = parseToolArgs(argv, {
    ...MODEL_OPTIONS,
    'cpu-synthetic': { type: 'boolean', default: false },
    layout: { type: 'string' },
    weights: { type: 'string' },
    runs: { type: 'string', default: '3' },
    'encode-steps': { type: 'string', default: '4' },
    img2img: { type: 'boolean', default: false },
    strength: { type: 'string', default: '0.5' },
    prompt: { type: 'string', default: DEFAULT_PROMPT },
    top: { type: 'string', default: '12' },
    'no-profile': { type: 'boolean', default: false },
    'plan-only': { type: 'boolean', default: false },
    'vae-max-mib': { type: 'string' },
    'max-memory': { type: 'string' },
    'release-encoders': { type: 'boolean', default: false },
    'warm-up': { type: 'boolean', default: false },
    'no-tune': { type: 'boolean', default: false },
  });
  if (values.help) return null;
  const model = modelOptions(values);
  if (values['cpu-synthetic'] && !values.synthetic) throw new BadOption('--cpu-synthetic applies to --synthetic only');
  if (!values.synthetic && values.layout !== undefined) throw new BadOption('--layout applies to --synthetic only');
  const strength = Number(values.strength);
  if (!(strength > 0 && strength <= 1)) throw new BadOption(`--strength must be in (0, 1], got "${values.strength}"`);
  return {
    ...model,
    layout: values.layout ?? LAYOUT,
    weights: oneOf('weights', values.weights, ['q8'] as const),
    runs: wholeOption('runs', values.runs, 1),
    encodeSteps: values['encode-steps'] === '0' ? 0 : wholeOption('encode-steps', values['encode-steps'], 2),
    img2img: values.img2img,
    strength,
    prompt: values.prompt,
    top: wholeOption('top', values.top, 1),
    profile: !values['no-profile'],
    planOnly: values['plan-only'],
    vaeMaxMiB: values['vae-max-mib'] === undefined ? null : wholeOption('vae-max-mib', values['vae-max-mib'], 1),
    maxMemory: values['max-memory'] === undefined ? undefined : byteSize(values['max-memory']),
    releaseEncoders: values['release-encoders'],
    warmUp: values['warm-up'],
    tune: !values['no-tune'],
    cpuSynthetic: values['cpu-synthetic'],
  };
}

function byteSize(text: string): number {
  try {
    return parseByteSize(text, '--max-memory');
  } catch (e) {
    throw new BadOption((e as Error).message);
  }
}

// ---- the model: tools/bench-model.ts ----------------------------------------------------

/** A smooth picture with some detail, for image-to-image. */
function testImage(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [u, v] = [x / width, y / height];
      const i = (y * width + x) * 3;
      data[i] = Math.round(255 * u);
      data[i + 1] = Math.round(255 * v);
      data[i + 2] = Math.round(127.5 + 127.5 * Math.sin(12 * u) * Math.cos(9 * v));
    }
  }
  return { width, height, data };
}

// ---- profiling ----------------------------------------------------------------------------

/**
 * Attributes every profiled dispatch to the part of the run that recorded it: 'encode-prompt',
 * 'step N', 'decode' (image-to-image: 'encode-image + step 1', as no event separates them). The
 * pipeline has no hook between its stages, but its progress events arrive synchronously in
 * recording order, and the profiler keys its totals by the label beginDispatch gets: prefixing
 * the current segment there attributes each dispatch exactly. While `segment` is null the
 * dispatches are recorded unprofiled (one shared pass, as without a profiler).
 */
class SegmentTagger {
  private segment: string | null = null;
  private active = false;

  constructor(private readonly profiler: Profiler, private readonly imageToImage: boolean) {
    const begin = profiler.beginDispatch.bind(profiler);
    profiler.beginDispatch = (label) => (this.segment === null ? null : begin(`${this.segment}\t${label}`));
  }

  /** Starts attributing (true) or turns profiling off (false); clears the totals either way. */
  setActive(active: boolean): void {
    this.active = active;
    this.segment = active ? 'encode-prompt' : null;
    this.profiler.reset();
  }

  onProgress(e: ProgressEvent): void {
    if (!this.active) return;
    if (e.stage === 'encode-prompt' && e.done === e.total) this.segment = this.imageToImage ? 'encode-image + step 1' : 'step 1';
    else if (e.stage === 'encode-image') this.segment = e.done === 0 ? 'encode-image' : 'step 1';
    else if (e.stage === 'denoise' && e.done < e.total) this.segment = `step ${e.done + 1}`;
    else if (e.stage === 'decode' && e.done === 0) this.segment = 'decode';
  }
}

interface KernelRow {
  readonly segment: string;
  readonly kernel: string;
  readonly family: string;
  readonly calls: number;
  readonly ms: number;
}

interface StepRow {
  /** A kernel family, or a kernel with its specialization. */
  readonly name: string;
  /** Per UNet step (mean over the steps profiled). */
  readonly calls: number;
  readonly ms: number;
  readonly percent: number;
}

interface Profile {
  readonly kernels: KernelRow[];
  /** GPU ms and dispatches per segment, in run order. */
  readonly segments: Array<{ segment: string; ms: number; dispatches: number; wallMs: number | null }>;
  /** The denoising steps with a segment of their own (image-to-image: not the first). */
  readonly unetSteps: number;
  readonly unetStepMs: number;
  readonly families: StepRow[];
  readonly specializations: StepRow[];
}

function summarize(kernels: KernelRow[], wall: Partial<Record<Stage, number>>, steps: number): Profile {
  const order = (s: string): number => (s === 'encode-prompt' ? 0 : s.startsWith('encode-image') ? 1 : s === 'decode' ? 1e9 : 2 + Number(s.replace(/\D/g, '')));
  const bySegment = new Map<string, { ms: number; dispatches: number }>();
  for (const k of kernels) {
    const s = bySegment.get(k.segment) ?? { ms: 0, dispatches: 0 };
    bySegment.set(k.segment, { ms: s.ms + k.ms, dispatches: s.dispatches + k.calls });
  }
  const wallOf = (segment: string): number | null =>
    segment === 'encode-prompt' ? (wall['encode-prompt'] ?? null)
    : segment === 'encode-image' ? (wall['encode-image'] ?? null) // not 'encode-image + step 1'
    : segment === 'decode' ? (wall.decode ?? null)
    : segment.startsWith('step ') && wall.denoise !== undefined ? wall.denoise / steps
    : null;
  const segments = [...bySegment]
    .sort(([a], [b]) => order(a) - order(b))
    .map(([segment, s]) => ({ segment, ...s, wallMs: wallOf(segment) }));
  const stepRows = kernels.filter((k) => /^step \d+$/.test(k.segment));
  const unetSteps = new Set(stepRows.map((k) => k.segment)).size;
  const unetStepMs = stepRows.reduce((s, k) => s + k.ms, 0) / Math.max(1, unetSteps);
  const perStep = (key: (k: KernelRow) => string): StepRow[] => {
    const groups = new Map<string, { calls: number; ms: number }>();
    for (const k of stepRows) {
      const g = groups.get(key(k)) ?? { calls: 0, ms: 0 };
      groups.set(key(k), { calls: g.calls + k.calls, ms: g.ms + k.ms });
    }
    return [...groups]
      .map(([name, g]) => ({ name, calls: g.calls / unetSteps, ms: g.ms / unetSteps, percent: (100 * g.ms) / unetSteps / unetStepMs }))
      .sort((a, b) => b.ms - a.ms);
  };
  return { kernels, segments, unetSteps, unetStepMs, families: perStep((k) => k.family), specializations: perStep((k) => k.kernel) };
}

async function readProfile(profiler: Profiler): Promise<KernelRow[]> {
  return (await profiler.report()).map((t) => {
    const tab = t.kernel.indexOf('\t');
    const kernel = t.kernel.slice(tab + 1);
    return { segment: t.kernel.slice(0, tab), kernel, family: kernel.replace(/\(.*$/, ''), calls: t.calls, ms: t.totalMs };
  });
}

// ---- the runs -----------------------------------------------------------------------------

interface RunTimes {
  readonly totalMs: number;
  readonly stages: Partial<Record<Stage, number>>;
}

async function runOnce(pipeline: SdxlTurboPipeline, options: Options, image: RgbImage | null, onProgress: (e: ProgressEvent) => void): Promise<RunTimes> {
  const common = { prompt: options.prompt, steps: options.steps, seed: options.seed, width: options.width, height: options.height, onProgress };
  const start = performance.now();
  const result: GenerateResult = image ? await pipeline.imageToImage({ ...common, image, strength: options.strength }) : await pipeline.generate(common);
  return { totalMs: performance.now() - start, stages: result.timings };
}

interface StepEncoding {
  /** CPU ms of every timed step. */
  readonly ms: number[];
  /** Per timed step, the ms the C allocator took for what the previous step left it (settleAllocator). */
  readonly allocatorMs: number[];
  /** Device objects created per timed step (mean). */
  readonly bindGroups: number;
  readonly buffers: number;
}

/**
 * The CPU time the denoising steps after the first take to record their work, `runs` text-to-image
 * runs of --encode-steps steps, the step (scheduler and UNet) replayed or encoded eagerly: from one
 * step's progress event (sent once its GPU work is done) to the GPU sync that ends the next step's
 * recording (gpu.sync is wrapped to see it, as SegmentTagger wraps the profiler). The step's
 * noise draw and its writes of the step's numbers are in it both ways; the C allocator's work left
 * by the previous step is done just before the window and timed apart (settleAllocator).
 */
async function stepEncoding(pipeline: SdxlTurboPipeline, gpu: WebGpuRuntime, o: Options, replay: boolean): Promise<StepEncoding> {
  const times: number[] = [];
  const allocatorTimes: number[] = [];
  const created = { bindGroups: 0, buffers: 0 };
  let last: { at: number; bindGroups: number; buffers: number } | null = null;
  const sync = gpu.sync;
  gpu.sync = async () => {
    if (last) {
      times.push(performance.now() - last.at);
      created.bindGroups += gpu.created.bindGroups - last.bindGroups;
      created.buffers += gpu.created.buffers - last.buffers;
      last = null;
    }
    return sync.call(gpu);
  };
  gpu.replayForwards = replay;
  try {
    const onProgress = (e: ProgressEvent): void => {
      if (e.stage === 'denoise' && e.done < e.total) {
        allocatorTimes.push(settleAllocator());
        last = { at: performance.now(), ...gpu.created };
      }
    };
    for (let run = 0; run < o.runs; run++) await pipeline.generate({ prompt: o.prompt, steps: o.encodeSteps, seed: o.seed, width: o.width, height: o.height, onProgress });
  } finally {
    gpu.replayForwards = true;
    Reflect.deleteProperty(gpu, 'sync');
  }
  return { ms: times, allocatorMs: allocatorTimes, bindGroups: created.bindGroups / times.length, buffers: created.buffers / times.length };
}

/**
 * Makes the C allocator do, now, the work the previous step left it, and returns its CPU ms. The
 * small blocks of a step's recording (Dawn tracks each dispatch's buffer usage in a few) are freed
 * during the wait for the GPU; glibc keeps small freed blocks unmerged and merges them all at the
 * next large allocation, which would otherwise be Dawn's first command block of the step being
 * timed: at real size that merge was 7–10 ms of a replayed step's 11–16 (perf, BENCHMARKS.md). A
 * 64 KiB ArrayBuffer (calloc) is such an allocation; with another allocator it is just one.
 */
function settleAllocator(): number {
  const start = performance.now();
  void new ArrayBuffer(64 * 1024); // the allocation is the point: nothing reads it
  return performance.now() - start;
}

const MB = 1e6;
const mb = (bytes: number): string => `${(bytes / MB).toFixed(bytes < 10 * MB ? 2 : 1)} MB`;
const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

async function main(argv: string[]): Promise<number> {
  const o = parseToolOptions('bench-pipeline', USAGE, parseOptions, argv);
  if (typeof o === 'number') return o;
  if (o.planOnly) {
    console.log(await planTable(o));
    return 0;
  }

  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const gpu = await openNodeGpu({ profile: o.profile, allowF16: o.dtype !== 'f32' });
  let pipeline: SdxlTurboPipeline | null = null;
  try {
    const log = (line = ''): void => console.log(line);
    log(`adapter: ${gpu.adapterName} (shader-f16: ${gpu.f16 ? 'yes' : 'no'}, timestamp-query: ${gpu.profiler ? 'yes' : o.profile ? 'no' : 'not asked'}, maxBufferSize ${gpu.limits.maxBufferSize} B)`);
    // glibc's settings move the encoding's "allocator before it" column (BENCHMARKS.md).
    if (process.env.GLIBC_TUNABLES) log(`GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES}`);
    // As loadPipeline does: the variants `sdxl-turbo tune` stored for this adapter, unless --no-tune.
    const tuned = o.tune ? await applyStoredTuning(gpu, nodeTuningStore(), (line) => console.error(`warning: ${line}`)) : 0;
    log(`kernel variants: ${o.tune ? `${tuned} stored choice(s) of sdxl-turbo tune (${tuningDir()})` : 'the heuristics (--no-tune)'}`);

    // 1. load
    const fs = await modelFs(o);
    const loadStart = performance.now();
    const model = await openModelFolder(o, fs);
    // The run to come, as loadPipeline's preflight would give it: load compiles its pipelines.
    const shape = { width: o.width, height: o.height, batch: 1, steps: o.img2img ? img2imgSteps(o.steps, o.strength) : o.steps, imageToImage: o.img2img, ...(o.weights ? { weights: o.weights } : {}) };
    const budget = { maxMemory: o.maxMemory, releaseEncoders: o.releaseEncoders, warmUp: o.warmUp };
    const context = { model: model.description, wrapPng: (bytes: Uint8Array) => bytes, run: shape };
    pipeline = await SdxlTurboPipeline.load(gpu, model.folder, {
      ...budget,
      dtype: o.dtype,
      ...(o.weights ? { weights: o.weights } : {}),
      onProgress: (e) => {
        if (e.stage === 'load' && e.done === e.total) console.error(`  weights loaded (${(e.total / 2 ** 20).toFixed(0)} MiB) at ${((performance.now() - loadStart) / 1000).toFixed(1)} s`);
      },
    }, false, context);
    const loadMs = performance.now() - loadStart;
    const compileMs = pipeline.loadTimings.compile ?? 0;
    const compiled = gpu.pipelines.size;
    const generateSeconds = model.generateSeconds();
    const loadPoolPeak = gpu.pool.peakBytes;
    const loadPeak = gpu.allocated.peak;
    const dtype = pipeline.dtype;
    log(`model: ${model.description}; ${o.img2img ? `image-to-image (strength ${o.strength})` : 'text-to-image'} ${o.width}×${o.height}, ${o.steps} step(s), ${pipeline.describe()[1]!.replace(/^compute: /, '')}`);
    log(`load: ${(loadMs / 1000).toFixed(1)} s${generateSeconds === null ? '' : ` (of which generating the synthetic weights: ${generateSeconds.toFixed(1)} s)`}; compiling ${compiled} pipelines (async, in parallel) ${ms(compileMs)} ms of it`);

    // The plan of this run (its dry run on this device), against what the pool held from an empty start.
    const { plan, options: planOptions } = await planRun(model.folder, shape, dtype, gpu.limits, budget);
    // The stages as the pipeline runs them: with a budget its choice; without, everything (or all
    // but the released encoders) resident, planned by the same arithmetic with no bound.
    const { choice } = await planRun(model.folder, shape, dtype, gpu.limits, { maxMemory: o.maxMemory ?? Number.MAX_SAFE_INTEGER, releaseEncoders: o.releaseEncoders });
    // The pool keeps what load's warm-up run grew it to, as the runs will use it.
    gpu.pool.peakBytes = gpu.pool.stats.liveBytes + gpu.pool.stats.pooledBytes;

    // 2. runs: first after load, timed, profiled
    const image = o.img2img ? testImage(o.width, o.height) : null;
    const tagger = gpu.profiler ? new SegmentTagger(gpu.profiler, o.img2img) : null;
    let denoiseSteps = 0;
    // Every buffer the device holds (weights, pooled and replayed activations, a load's
    // transients), at its most over each stage.
    const stages = watchStages(gpu);
    const onProgress = (e: ProgressEvent): void => {
      if (e.stage === 'denoise') denoiseSteps = e.total;
      tagger?.onProgress(e);
      stages.onProgress(e);
    };
    tagger?.setActive(false);
    const syncBefore = gpu.pipelines.createdSync;
    const createdBefore = { ...gpu.created };
    const warm = await runOnce(pipeline, o, image, onProgress);
    const firstRunSyncPipelines = gpu.pipelines.createdSync - syncBefore;
    const firstRunCreated = { buffers: gpu.created.buffers - createdBefore.buffers, bindGroups: gpu.created.bindGroups - createdBefore.bindGroups };
    const secondBefore = { ...gpu.created };
    const timed: RunTimes[] = [];
    timed.push(await runOnce(pipeline, o, image, onProgress));
    const secondRunCreated = { buffers: gpu.created.buffers - secondBefore.buffers, bindGroups: gpu.created.bindGroups - secondBefore.bindGroups };
    log(
      `first run after load: ${ms(warm.totalMs)} ms (pipelines created synchronously: ${firstRunSyncPipelines}; buffers ${firstRunCreated.buffers}, bind groups ${firstRunCreated.bindGroups}; ` +
        `the next run: buffers ${secondRunCreated.buffers}, bind groups ${secondRunCreated.bindGroups})`,
    );
    log(`run 1/${o.runs}: ${ms(timed[0]!.totalMs)} ms`);
    for (let i = 1; i < o.runs; i++) {
      timed.push(await runOnce(pipeline, o, image, onProgress));
      log(`run ${i + 1}/${o.runs}: ${ms(timed[i]!.totalMs)} ms`);
    }
    let profile: Profile | null = null;
    if (tagger && gpu.profiler) {
      tagger.setActive(true);
      const run = await runOnce(pipeline, o, image, onProgress);
      profile = summarize(await readProfile(gpu.profiler), run.stages, denoiseSteps);
      tagger.setActive(false);
      log(`profiled run: ${ms(run.totalMs)} ms`);
    }
    const runPoolPeak = gpu.pool.peakBytes;
    const replayed = replayBytes(gpu);
    const encoding = o.encodeSteps === 0 ? null : { eager: await stepEncoding(pipeline, gpu, o, false), replayed: await stepEncoding(pipeline, gpu, o, true) };

    // 3. report
    const stageNames = (['encode-prompt', 'encode-image', 'denoise', 'decode'] as const).filter((s) => timed[0]!.stages[s] !== undefined);
    const stageMedian = (s: Stage): number => median(timed.map((t) => t.stages[s]!));
    const row = (name: string, of: (t: RunTimes) => number): string[] => [name, ms(median(timed.map(of))), ms(Math.min(...timed.map(of))), ms(of(warm)), (of(warm) / median(timed.map(of))).toFixed(2)];
    const stageRows: string[][] = [
      ['load (once)', ms(loadMs), '', '', ''],
      ['  of which compile', ms(compileMs), '', '', ''],
      ...stageNames.flatMap((s) => [
        row(s, (t) => t.stages[s]!),
        ...(s === 'denoise' ? [row(`  per step (${denoiseSteps} step${denoiseSteps > 1 ? "s" : ""})`, (t) => t.stages.denoise! / denoiseSteps)] : []),
      ]),
      row(image ? 'imageToImage() total' : 'generate() total', (t) => t.totalMs),
    ];
    log(`\nWall clock, ms (median and fastest of ${o.runs} timed run(s); the first run after load separately, and first / median: goal ≤ 1.1):\n`);
    log(markdownTable(['stage', 'median', 'fastest', 'first run', 'first / median'], stageRows, new Set([1, 2, 3, 4])));

    if (profile) {
      log('\nGPU time by part of the profiled run (sum of its kernels), next to the wall clock of the same run (steps: the denoise stage / steps):\n');
      log(
        markdownTable(
          ['part', 'dispatches', 'GPU ms', 'wall ms', 'top families'],
          profile.segments.map((s) => {
            const top = topFamilies(profile!.kernels.filter((k) => k.segment === s.segment), s.ms, 3);
            return [s.segment, String(s.dispatches), ms(s.ms), s.wallMs === null ? '' : ms(s.wallMs), top];
          }),
          new Set([1, 2, 3]),
        ),
      );
      if (profile.unetSteps > 0) {
        const stepTable = (what: string, rows: readonly StepRow[], n: number): string => {
          const cells = rows.slice(0, n).map((r) => [r.name, fmtCalls(r.calls), ms(r.ms), r.percent.toFixed(1)]);
          const rest = rows.slice(n);
          if (rest.length > 0) {
            const restMs = rest.reduce((s, r) => s + r.ms, 0);
            cells.push([`(${rest.length} other${rest.length > 1 ? 's' : ''})`, fmtCalls(rest.reduce((s, r) => s + r.calls, 0)), ms(restMs), ((100 * restMs) / profile!.unetStepMs).toFixed(1)]);
          }
          return markdownTable([what, 'calls/step', 'ms/step', '% of step'], cells, new Set([1, 2, 3]));
        };
        log(`\nUNet step (with the scheduler's arithmetic), mean of ${profile.unetSteps} step(s): ${ms(profile.unetStepMs)} ms of GPU time; top ${o.top} kernel families:\n`);
        log(stepTable('kernel family', profile.families, o.top));
        log(`\nThe same step by kernel specialization (top ${Math.ceil(o.top / 2)}):\n`);
        log(stepTable('kernel', profile.specializations, Math.ceil(o.top / 2)));
      } else {
        log('\nNo denoising step has a profile of its own (image-to-image with one step shares it with encode-image): raise --steps.');
      }
    } else {
      log(`\nNo kernel profile (${o.profile ? "the adapter has no timestamp-query" : '--no-profile'}).`);
    }

    const withAllocator = (e: StepEncoding): number[] => e.ms.map((t, i) => t + e.allocatorMs[i]!);
    const encodingResult = encoding && {
      ...encoding,
      eagerOverReplayed: median(encoding.eager.ms) / median(encoding.replayed.ms),
      withAllocatorEagerOverReplayed: median(withAllocator(encoding.eager)) / median(withAllocator(encoding.replayed)),
    };
    if (encodingResult) {
      log(`\nCPU time to encode one denoising step (${o.runs} text-to-image run(s) of ${o.encodeSteps} steps each way, steps 2–${o.encodeSteps} timed; the step (scheduler and UNet) eager, or replayed from its recording: goal ≥ 10× less; before each, timed apart, the C allocator merges the blocks the previous step freed):\n`);
      log(
        markdownTable(
          ['step', 'median ms', 'fastest ms', 'allocator before it, median ms', 'bind groups / step', 'buffers / step'],
          (['eager', 'replayed'] as const).map((k) => [k, ms(median(encodingResult[k].ms)), ms(Math.min(...encodingResult[k].ms)), ms(median(encodingResult[k].allocatorMs)), fmtCalls(encodingResult[k].bindGroups), fmtCalls(encodingResult[k].buffers)]),
          new Set([1, 2, 3, 4, 5]),
        ),
      );
      log(`eager / replayed: ${encodingResult.eagerOverReplayed.toFixed(1)}× (the allocator's merge counted in: ${encodingResult.withAllocatorEagerOverReplayed.toFixed(1)}×)`);
    } else {
      log('\nCPU time to encode one denoising step: not measured (--encode-steps 0).');
    }

    const weights = plan.reduce((s, r) => s + (r.weightBytes ?? 0), 0);
    const largest = Math.max(...plan.map((r) => r.pooledBytes));
    const sum = plan.reduce((s, r) => s + r.pooledBytes, 0);
    log(`\n${formatMemoryPlan(plan, planOptions)}`);
    if (o.maxMemory !== undefined) log(describeChoice(choice!));
    const planned = new Map<string, number>([
      ['load', 0],
      ['encode-prompt', activation(plan, 'text_encoder') + activation(plan, 'text_encoder_2')],
      ['encode-image', activation(plan, 'vae encode')],
      ['denoise', activation(plan, 'unet')],
      ['decode', activation(plan, 'vae decode')],
    ]);
    const stageMemory = choice!.stages.map((s) => ({ stage: s.stage, plannedBytes: s.bytes, plannedActivationBytes: planned.get(s.stage)!, measuredBytes: (s.stage === 'load' ? loadPeak : stages.peaks.get(s.stage)) ?? 0 }));
    log(
      `\nGPU memory per stage (${describeResidency(choice!.residency)}; measured: every buffer the device held at once over the stage in every run, the load's${o.warmUp ? ' with its warm-up run' : ''}, the UNet's replay kept beside a stage where the budget leaves room for it${o.maxMemory === undefined ? '; no budget, so idle buffers of earlier stages stay pooled' : ''}):\n`,
    );
    log(
      markdownTable(
        ['stage', 'activations MB (plan)', 'total MB (plan)', 'total MB (measured)'],
        stageMemory.map((m) => [m.stage, (m.plannedActivationBytes / MB).toFixed(1), (m.plannedBytes / MB).toFixed(1), (m.measuredBytes / MB).toFixed(1)]),
        new Set([1, 2, 3]),
      ),
    );
    log(
      `measured: weights ${mb(weights)} (as declared and allocated) + buffer pool peak ${mb(runPoolPeak)} over the runs + the UNet replay's buffers ${mb(replayed)} = ${mb(weights + runPoolPeak + replayed)}; ` +
        `plan for the networks this run uses: activations ${mb(largest)} – ${mb(sum)} (largest peak – sum of peaks) = ${mb(weights + largest)} – ${mb(weights + sum)}`,
    );
    log(`load: buffer pool peak ${mb(loadPoolPeak)} (staging of the dtype casts, freed before the warm-up run; then that run's)`);

    if (o.json) {
      const out = {
        date: new Date().toISOString(),
        argv,
        adapter: { name: gpu.adapterName, f16: gpu.f16, timestampQuery: gpu.profiler !== null, maxBufferSize: gpu.limits.maxBufferSize, maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize },
        glibcTunables: process.env.GLIBC_TUNABLES ?? null,
        model: model.description,
        storedTuningChoices: o.tune ? tuned : null,
        run: { mode: o.img2img ? 'image-to-image' : 'text-to-image', width: o.width, height: o.height, steps: o.steps, denoiseSteps, strength: o.img2img ? o.strength : null, dtype, vaeDtype: 'f32', prompt: o.prompt, seed: o.seed },
        load: { ms: loadMs, compileMs, pipelinesCompiled: compiled, generateSyntheticMs: generateSeconds === null ? null : generateSeconds * 1000, warmUp: o.warmUp },
        stages: Object.fromEntries(stageNames.map((s) => [s, { medianMs: stageMedian(s), runsMs: timed.map((t) => t.stages[s]!), warmupMs: warm.stages[s]! }])),
        denoisePerStepMedianMs: stageNames.includes('denoise') ? stageMedian('denoise') / denoiseSteps : null,
        totalMs: { median: median(timed.map((t) => t.totalMs)), runs: timed.map((t) => t.totalMs), warmup: warm.totalMs },
        firstRun: { ms: warm.totalMs, overMedian: warm.totalMs / median(timed.map((t) => t.totalMs)), pipelinesCreatedSync: firstRunSyncPipelines, created: firstRunCreated, nextRunCreated: secondRunCreated },
        profile,
        stepEncoding: encodingResult,
        memory: {
          weightBytes: weights,
          poolPeakBytes: runPoolPeak,
          replayBytes: replayed,
          loadPoolPeakBytes: loadPoolPeak,
          plan: plan as NetworkMemory[],
          planActivationRangeBytes: [largest, sum],
          maxMemory: o.maxMemory ?? null,
          residency: choice!.residency,
          stages: stageMemory,
        },
      };
      writeFileSync(o.json, `${JSON.stringify(out, null, 2)}\n`);
      log(`\nwrote ${o.json}`);
    }
    return 0;
  } finally {
    await pipeline?.dispose();
    gpu.dispose();
  }
}

/** --plan-only: the dry runs' plan rows as a Markdown table. */
async function planTable(o: Options): Promise<string> {
  const root = o.model ?? o.layout;
  const json = async (path: string): Promise<unknown> => JSON.parse(await readFile(`${root}/${path}`, 'utf8'));
  const configs: PipelineConfigs = {
    textEncoder: await json('text_encoder/config.json'),
    textEncoder2: await json('text_encoder_2/config.json'),
    unet: await json('unet/config.json'),
    vae: await json('vae/config.json'),
    scheduler: await json('scheduler/scheduler_config.json'),
  };
  const options = { width: o.width, height: o.height, batch: 1, steps: o.steps, dtype: o.dtype ?? 'f16', ...(o.weights ? { weights: o.weights } : {}) } as const;
  const started = performance.now();
  const rows: Array<[string, NetworkMemory]> = (await planMemory(configs, options)).map((r) => [r.network, r]);
  if (o.vaeMaxMiB !== null) {
    const capped = await planMemory(configs, { ...options, vaeMaxActivationBytes: o.vaeMaxMiB * 2 ** 20 });
    rows.push([`vae decode, buffers ≤ ${o.vaeMaxMiB} MiB`, capped.find((r) => r.network === 'vae decode')!]);
  }
  const encode = (await planMemory(configs, { ...options, imageToImage: true })).find((r) => r.network === 'vae encode')!;
  rows.push(['vae encode', encode]);
  // Each residency's stages (the VAE untiled), and with --max-memory the budget's choice.
  const input = shapeInput(configs, { width: o.width, height: o.height, batch: 1, steps: o.img2img ? img2imgSteps(o.steps, o.strength) : o.steps, imageToImage: o.img2img, ...(o.weights ? { weights: o.weights } : {}) }, options.dtype);
  const device = { limits: withDefaults(UNBOUNDED) };
  const residencies: string[] = [];
  for (const least of ['all', 'release-encoders', 'sequential'] as const) {
    const { choice } = await planBudget(configs, input, device, Number.MAX_SAFE_INTEGER, least);
    residencies.push(`- ${describeResidency(least)}: peak ${formatBytes(choice.peak)} (${choice.stages.map((st) => `${st.stage} ${formatBytes(st.bytes)}`).join(', ')})`);
  }
  if (o.maxMemory !== undefined) {
    residencies.push(`- ${await planBudget(configs, input, device, o.maxMemory, o.releaseEncoders ? 'release-encoders' : 'all').then(({ choice }) => describeChoice(choice), (e: Error) => e.message)}`);
  }
  const planMs = performance.now() - started;
  const cells = rows.map(([name, r]) => [name, r.weightBytes === null ? '(shared)' : (r.weightBytes / MB).toFixed(1), (r.pooledBytes / MB).toFixed(1), (r.liveBytes / MB).toFixed(1), String(r.dispatches), (r.boundBytes / MB).toFixed(0), r.note]);
  const table = markdownTable(['network', 'weights MB', 'activations MB', 'live MB', 'dispatches', 'MB bound', 'notes'], cells, new Set([1, 2, 3, 4, 5]));
  return `${table}

${o.img2img ? 'Image-to-image' : 'Text-to-image'}, each stage its resident weights plus its activations (src/pipeline/budget.ts):
${residencies.join('\n')}

${o.width}×${o.height}, batch 1, ${options.dtype}${o.weights ? ', 8-bit weights' : ''}, ${o.steps} step(s): planned in ${planMs.toFixed(0)} ms`;
}

/** A network's pooled activations in the plan (0 when the run does not use it). */
function activation(plan: readonly NetworkMemory[], network: string): number {
  return plan.find((r) => r.network === network)?.pooledBytes ?? 0;
}

function describeResidency(residency: Residency): string {
  return residency === 'all' ? 'all networks resident' : residency === 'release-encoders' ? 'text encoders released after encoding' : 'text encoders released after encoding, the UNet while they run';
}

function fmtCalls(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(1);
}

/** e.g. "conv2d 71%, groupnorm 12%, matmul 9%". */
function topFamilies(kernels: readonly KernelRow[], totalMs: number, n: number): string {
  const byFamily = new Map<string, number>();
  for (const k of kernels) byFamily.set(k.family, (byFamily.get(k.family) ?? 0) + k.ms);
  return [...byFamily]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([family, t]) => `${family} ${((100 * t) / totalMs).toFixed(0)}%`)
    .join(', ');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`bench-pipeline: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  },
);
