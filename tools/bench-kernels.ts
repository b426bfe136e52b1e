// Kernel benchmark (Node): times every distinct op shape of one SDXL-Turbo UNet call at 512²
// (test/fixtures/sdxl-turbo-layout/unet-call-shapes.json) and prints a table against a
// ceiling measured in the same run. `npm run bench:kernels -- --help` lists the options.
//
// Ceiling: peak GFLOP/s = the fastest call of a square matmul (sized until one call takes
// ≥ 50 ms, at most 4096³) over every matmul tile; peak GB/s = the fastest of three batches of
// buffer-to-buffer copies (read + write bytes). Fastest, not median: a ceiling bounds from above.
// Beside it, numpy's float32 dot (OpenBLAS sgemm on the CPU cores, best of 3 at 1024³ and 2048³)
// in the same run, and the ratio best matmul / sgemm: what a software adapter such as lavapipe
// is measured against (on a GPU it only says how far the card is ahead of the CPU).
// "% of ceiling" is the roofline bound max(flops / peak GFLOP/s, bytes / peak GB/s) divided by
// the measured time, where bytes is the minimum traffic (inputs read once, output written once).
// Timing: GPU timestamps around each dispatch when the adapter has timestamp-query (the median
// over reps of one op call's summed kernel time), else the wall clock around a synced call.
// Validation (as llm.c's dev/cuda does): every case it times is also run once against the
// float64 reference of its kernel (test/reference/), on SAMPLES output elements spread over the
// output (a full reference of a real-size conv takes minutes); the relative L2 error is printed
// beside the time, and a case over TOLERANCE fails the run.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openNodeGpu } from '../src/gpu/node.js';
import type { WebGpuRuntime as Gpu } from '../src/gpu/runtime.js';
import { attention } from '../src/ops/attention.js';
import { uploadAs } from '../src/ops/cast.js';
import { conv2d, CONV2D_VARIANTS, type Conv2dVariant } from '../src/ops/conv2d.js';
import { linear, MATMUL_TILES, type MatmulTile, matmul, pickVariant } from '../src/ops/matmul.js';
import { groupNorm } from '../src/ops/groupnorm.js';
import { bytesPerElement, type DType, numel, Tensor } from '../src/tensor.js';
import { attentionRef } from '../test/reference/attention.js';
import { conv2dRef } from '../test/reference/conv2d.js';
import { groupNormRef } from '../test/reference/groupnorm.js';
import { matmulRef } from '../test/reference/matmul.js';
import { relL2 } from '../test/reference/util.js';
import { markdownTable } from './bench-report.js';
import { measure } from '../src/gpu/timing.js';
import type { TunableCall, TuningChoices } from '../src/gpu/tuning.js';
import { loadTuningTable, tuningChoices } from '../src/gpu/tuning-table.js';
import { nodeTuningStore } from '../src/node/tuning-store.js';
import { measureCalls } from '../src/pipeline/tune.js';

const SHAPES_FILE = 'test/fixtures/sdxl-turbo-layout/unet-call-shapes.json';

const USAGE = `npm run bench:kernels -- [options]
  --dtype f16|f32   storage dtype (default f16 where the adapter has shader-f16, else f32)
  --filter TEXT     only cases whose kernel or shape contains TEXT
  --conv-variant V  force conv2d's tile V (one of ${CONV2D_VARIANTS.join(', ')})
  --reps N          timed runs per case, median reported (default 5)
  --budget S        seconds per case: reps stop when spent; a case whose roofline estimate
                    exceeds S/2 is skipped (default 3, sized for lavapipe; raise it on a GPU)
  --quick           the two most frequent shapes of each kernel only
  --small           the cheapest shape of each kernel variant only (a check that runs in a
                    few minutes on lavapipe; the GPU bundle's run.sh --small)
  --tuned           also time each case with the variants \`sdxl-turbo tune\` stored for this
                    adapter (--tuning-dir DIR, default as tune's); a case without a stored
                    choice shows none
  --tune            also time each case with the variants measured now: every candidate of its
                    calls (as \`sdxl-turbo tune\` does, within --budget), the fastest kept
  --tuning-dir DIR  where --tuned reads the table
  --time-limit S    start no case after S seconds; the rest are listed as not run, and the
                    results so far written (the GPU bundle's run.sh --time-limit)
  --json OUT        also write the ceiling, every row and the sum as JSON
  --markdown OUT    also write the table and the summary lines as Markdown
Every case timed is first checked against its kernel's float64 reference (test/reference/) on
sampled outputs; the error is printed beside the time and a case over tolerance fails the run.`;

// ---- the shapes ----------------------------------------------------------------------------

interface LinearCall {
  readonly type: 'Linear';
  readonly input_shape: number[];
  readonly weight_shape: [number, number];
  readonly bias: boolean;
}
interface ConvCall {
  readonly type: 'Conv2d';
  readonly module: string;
  readonly input_shape: [number, number, number, number];
  readonly weight_shape: [number, number, number, number];
  readonly output_shape: number[];
  readonly bias: boolean;
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly macs: number;
}
interface AttentionCall {
  readonly type: 'Attention';
  readonly hidden_states_shape: [number, number, number];
  readonly context_shape: [number, number, number];
  readonly heads: number;
  readonly head_dim: number;
  readonly qk_macs: number;
  readonly av_macs: number;
}
type Call = LinearCall | ConvCall | AttentionCall;

/** Output elements each case checks against its reference. */
const SAMPLES = 512;
/** Relative L2 bound of a check: f32 accumulates up to ~26k products (conv 2880·9) in f32
 *  (≈ √K·2⁻²⁴ ≈ 1e-5); f16 adds the output's storage rounding (≈ 3e-4 rms). */
const TOLERANCE: Record<DType, number> = { f32: 1e-4, f16: 2e-3 };

/** An op call set up for timing, and its check against the reference. */
interface Prepared {
  run(): Tensor;
  /** Relative L2 error of `out` (one run's output) against the float64 reference, on a sample. */
  check(out: Tensor): Promise<number>;
  release(): void;
}

/** One benchmarked shape: how to run it once, and the work it does. */
interface Case {
  readonly kernel: string;
  readonly shape: string;
  /** Calls per UNet forward at 512². */
  calls: number;
  readonly flops: number;
  /** Minimum traffic in elements (inputs once, output once); × bytes per element later. */
  readonly elements: number;
  prepare(gpu: Gpu, dtype: DType): Prepared;
}

/** A tensor of pseudo-random N(0, scale²)-ish values; a repeated block keeps setup fast. */
function random(gpu: Gpu, shape: readonly number[], dtype: DType, scale = 1): Tensor {
  const n = numel(shape);
  const block = new Float32Array(Math.min(n, 65521)); // prime length: no alignment with rows
  let s = 0x9e3779b9;
  for (let i = 0; i < block.length; i++) {
    let sum = 0; // Irwin–Hall: 4 uniforms, variance 1/3 → × √3
    for (let j = 0; j < 4; j++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      sum += s / 4294967296 - 0.5;
    }
    block[i] = sum * Math.sqrt(3) * scale;
  }
  const data = new Float32Array(n);
  for (let i = 0; i < n; i += block.length) data.set(block.subarray(0, Math.min(block.length, n - i)), i);
  return uploadAs(gpu, data, 'f32', shape, dtype, { label: 'bench input' });
}

function releaseAll(tensors: ReadonlyArray<Tensor | null>): void {
  for (const t of tensors) t?.release();
}

/** The values `tensors` hold (as the kernel read them: f16 inputs are rounded). */
function readAll(tensors: ReadonlyArray<Tensor | null>): Promise<Array<Float32Array | null>> {
  return Promise.all(tensors.map((t) => t?.read() ?? null));
}

/** SAMPLES output indices spread over [0, total) (all of them when fewer), deterministic. */
function sample(total: number): number[] {
  if (total <= SAMPLES) return Array.from({ length: total }, (_, i) => i);
  let s = 12345;
  return Array.from({ length: SAMPLES }, (_, i) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.min(total - 1, Math.floor(((i + s / 4294967296) * total) / SAMPLES));
  });
}

/** relL2 of `out` at `at` against the reference's values there. */
async function sampledError(out: Tensor, at: readonly number[], want: Float64Array): Promise<number> {
  const got = await out.read();
  return relL2(at.map((i) => got[i]!), want);
}

function linearCase(m: number, k: number, n: number, bias: boolean): Case {
  return {
    kernel: `linear[${pickVariant(1, m, n, true)}]`,
    shape: `${m}×${k}→${n}${bias ? ' +b' : ''}`,
    calls: 1,
    flops: 2 * m * n * k,
    elements: m * k + n * k + m * n + (bias ? n : 0),
    prepare(gpu, dtype) {
      const x = random(gpu, [m, k], dtype);
      const w = random(gpu, [n, k], dtype, 1 / Math.sqrt(k));
      const b = bias ? random(gpu, [n], dtype) : null;
      return {
        run: () => linear(x, w, b),
        async check(out) {
          const [xs, ws, bs] = await readAll([x, w, b]);
          const at = sample(m * n);
          return sampledError(out, at, matmulRef(xs!, ws!, { batch: 1, m, n, k }, { transposeB: true, bBatched: false, bias: bs }, at));
        },
        release: () => releaseAll([x, w, b]),
      };
    },
  };
}

/** --conv-variant: the tile every conv2d case runs with (default: the launcher's choice). */
let convVariant: Conv2dVariant | undefined;

function convCase(c: ConvCall): Case {
  const [, cin, h, w] = c.input_shape;
  const [o, , kh, kw] = c.weight_shape;
  return {
    kernel: 'conv2d',
    shape: `${cin}×${h}×${w}→${o} ${kh}×${kw}${c.stride[0] > 1 ? ` s${c.stride[0]}` : ''}`,
    calls: 1,
    flops: 2 * c.macs,
    elements: numel(c.input_shape) + numel(c.weight_shape) + numel(c.output_shape) + (c.bias ? o : 0),
    prepare(gpu, dtype) {
      const x = random(gpu, c.input_shape, dtype);
      const weight = random(gpu, c.weight_shape, dtype, 1 / Math.sqrt(cin * kh * kw));
      const bias = c.bias ? random(gpu, [o], dtype) : null;
      const options = { stride: c.stride[0], padding: c.padding[0], ...(convVariant ? { variant: convVariant } : {}) };
      const [p, s] = [c.padding[0], c.stride[0]];
      return {
        run: () => conv2d(x, weight, bias, options),
        async check(out) {
          const [xs, ws, bs] = await readAll([x, weight, bias]);
          const at = sample(numel(c.output_shape));
          return sampledError(out, at, conv2dRef(xs!, ws!, bs, null, { x: c.input_shape, o, kh, kw, stride: s, pad: [p, p, p, p] }, at));
        },
        release: () => releaseAll([x, weight, bias]),
      };
    },
  };
}

function attentionCase(c: AttentionCall): Case {
  const [batch, lq, width] = c.hidden_states_shape;
  const lk = c.context_shape[1];
  return {
    kernel: 'attention',
    shape: `${lq}×${lk} ${c.heads}h×${c.head_dim}`,
    calls: 1,
    flops: 2 * (c.qk_macs + c.av_macs),
    elements: 2 * batch * lq * width + 2 * batch * lk * width,
    prepare(gpu, dtype) {
      const q = random(gpu, [batch, lq, width], dtype);
      const k = random(gpu, [batch, lk, width], dtype);
      const v = random(gpu, [batch, lk, width], dtype);
      return {
        run: () => attention(q, k, v, { heads: c.heads }),
        async check(out) {
          const [qs, ks, vs] = await readAll([q, k, v]);
          const at = sample(batch * lq * width);
          const dims = { batch, lq, lk, heads: c.heads, d: c.head_dim };
          return sampledError(out, at, attentionRef(qs!, ks!, vs!, dims, 1 / Math.sqrt(c.head_dim), at));
        },
        release: () => releaseAll([q, k, v]),
      };
    },
  };
}

function groupNormCase(shape: readonly number[]): Case {
  const channels = shape[1]!;
  return {
    kernel: 'groupnorm+silu',
    shape: `${shape.slice(1).join('×')} 32g`,
    calls: 1,
    flops: 0, // bandwidth-bound: judged by bytes only
    elements: 2 * numel(shape) + 2 * channels,
    prepare(gpu, dtype) {
      const x = random(gpu, shape, dtype);
      const gamma = random(gpu, [channels], dtype);
      const beta = random(gpu, [channels], dtype);
      return {
        run: () => groupNorm(x, gamma, beta, { groups: 32, eps: 1e-5, silu: true }),
        async check(out) {
          const [xs, gs, bs] = await readAll([x, gamma, beta]);
          const at = sample(numel(shape));
          return sampledError(out, at, groupNormRef(xs!, shape, 32, 1e-5, gs!, bs!, true, at));
        },
        release: () => releaseAll([x, gamma, beta]),
      };
    },
  };
}

/** Distinct cases in first-seen order, with how often each occurs. */
function distinctCases(calls: readonly Call[]): Case[] {
  const byKey = new Map<string, Case>();
  const add = (c: Case): void => {
    const key = `${c.kernel} ${c.shape}`;
    const seen = byKey.get(key);
    if (seen) seen.calls += 1;
    else byKey.set(key, c);
  };
  for (const c of calls) {
    if (c.type === 'Linear') add(linearCase(numel(c.input_shape.slice(0, -1)), c.weight_shape[1], c.weight_shape[0], c.bias));
    else if (c.type === 'Conv2d') add(convCase(c));
    else add(attentionCase(c));
  }
  // GroupNorm has no entry of its own: one (32 groups, SiLU) precedes every resnet conv and
  // conv_out, on that conv's input.
  for (const c of calls) {
    if (c.type === 'Conv2d' && /(\.conv1|\.conv2|^conv_out)$/.test(c.module)) add(groupNormCase(c.input_shape));
  }
  return [...byKey.values()];
}

// ---- timing ------------------------------------------------------------------------------


/** Copy bandwidth in GB/s (bytes read + written), from buffer-to-buffer copies. */
async function copyBandwidth(gpu: Gpu): Promise<number> {
  const bytes = Math.min(64 * 2 ** 20, gpu.limits.maxBufferSize / 2);
  const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | GPUBufferUsage.STORAGE;
  const src = gpu.device.createBuffer({ size: bytes, usage, label: 'bench copy src' });
  const dst = gpu.device.createBuffer({ size: bytes, usage, label: 'bench copy dst' });
  const copies = async (n: number): Promise<number> => {
    await gpu.sync();
    const start = performance.now();
    const encoder = gpu.device.createCommandEncoder();
    for (let i = 0; i < n; i++) encoder.copyBufferToBuffer(src, 0, dst, 0, bytes);
    gpu.device.queue.submit([encoder.finish()]);
    await gpu.sync();
    return (performance.now() - start) / n;
  };
  await copies(1);
  const ms = Math.min(await copies(4), await copies(4), await copies(4));
  src.destroy();
  dst.destroy();
  return (2 * bytes) / (ms * 1e6);
}

interface Peak {
  readonly gflops: number;
  readonly size: number;
  readonly tile: MatmulTile;
  readonly all: string;
}

/** The best square-matmul GFLOP/s over every tile, at a size large enough to fill the device. */
async function matmulPeak(gpu: Gpu, dtype: DType, reps: number): Promise<Peak> {
  let size = 256;
  const square = (s: number, tile: MatmulTile): Prepared => {
    const a = random(gpu, [1, s, s], dtype);
    const b = random(gpu, [1, s, s], dtype, 1 / Math.sqrt(s));
    return {
      run: () => matmul(a, b, { transposeB: true, variant: tile }),
      async check(out) {
        const [as, bs] = await readAll([a, b]);
        const at = sample(s * s);
        return sampledError(out, at, matmulRef(as!, bs!, { batch: 1, m: s, n: s, k: s }, { transposeB: true, bBatched: true }, at));
      },
      release: () => releaseAll([a, b]),
    };
  };
  for (;;) {
    const probe = square(size, 'large');
    const { ms } = await measure(gpu, () => probe.run().release(), 1, Infinity);
    probe.release();
    if (ms >= 50 || size >= 4096) break;
    size *= 2;
  }
  let best: Peak = { gflops: 0, size, tile: 'large', all: '' };
  const all: string[] = [];
  for (const tile of Object.keys(MATMUL_TILES) as MatmulTile[]) {
    const c = square(size, tile);
    let out: Tensor;
    try {
      out = c.run();
    } catch (e) {
      // A tile this call or device cannot run (f16 staging in an f32 run, workgroup memory).
      c.release();
      all.push(`${tile} n/a (${e instanceof Error ? e.message : String(e)})`);
      continue;
    }
    const error = await c.check(out);
    out.release();
    if (!(error <= TOLERANCE[dtype])) throw new Error(`bench-kernels: matmul ${size}³ tile ${tile} disagrees with the reference (${error.toExponential(1)})`);
    const { minMs } = await measure(gpu, () => c.run().release(), Math.min(reps, 3), Infinity);
    c.release();
    const gflops = (2 * size ** 3) / (minMs * 1e6);
    all.push(`${tile} ${fmt(gflops)} (error ${error.toExponential(1)})`);
    if (gflops > best.gflops) best = { gflops, size, tile, all: '' };
  }
  return { ...best, all: all.join(', ') };
}

// ---- heuristic vs tuned -------------------------------------------------------------------

/** Each distinct call once (op id and key). */
function dedupe(calls: readonly TunableCall[]): TunableCall[] {
  return [...new Map(calls.map((c) => [`${c.op.id}|${c.key}`, c])).values()];
}

/**
 * The case timed again with its calls' tuned variants: `stored` choices (null: measured now, every
 * candidate of each call as `sdxl-turbo tune` does). Null when no call has a stored entry; `ms`
 * null when every call keeps its heuristic (that time stands); `error` the tuned run's relative L2
 * error against the reference (null: not run).
 */
async function tunedTiming(gpu: Gpu, setup: Prepared, calls: readonly TunableCall[], stored: TuningChoices | null, reps: number, budgetMs: number): Promise<{ ms: number | null; variants: string; error: number | null } | null> {
  let choices: Map<string, string>;
  if (stored) {
    choices = new Map(calls.flatMap((c) => (stored.has(`${c.op.id}|${c.key}`) ? [[`${c.op.id}|${c.key}`, stored.get(`${c.op.id}|${c.key}`)!] as const] : [])));
    if (choices.size === 0) return null;
  } else {
    const { calls: measured } = await measureCalls(gpu, calls.map((call) => ({ call, count: 1 })), { reps, budgetMs });
    choices = new Map(measured.flatMap((m) => (m.best === null ? [] : [[m.id, m.best] as const])));
  }
  if (calls.length === 0) return { ms: null, variants: '-', error: null };
  const variants = calls.map((c) => `${c.heuristic}→${choices.get(`${c.op.id}|${c.key}`) ?? c.heuristic}`).join(', ');
  if (calls.every((c) => (choices.get(`${c.op.id}|${c.key}`) ?? c.heuristic) === c.heuristic)) return { ms: null, variants, error: null };
  gpu.tuning.use(choices);
  try {
    // Validated as the heuristic's run is: the tuned variants must agree with the reference too.
    const out = setup.run();
    const error = await setup.check(out);
    out.release();
    return { ms: (await measure(gpu, () => setup.run().release(), reps, budgetMs)).ms, variants, error };
  } finally {
    gpu.tuning.use(new Map());
  }
}

/** numpy.dot of float32 squares on this machine's CPU (python3 + numpy; its BLAS is OpenBLAS
 *  in the wheels): GFLOP/s, or why there is none. */
function cpuSgemm(): { gflops: number; blas: string; what: string } | { missing: string } {
  const script = `
import sys, time
try:
    import numpy as np
except ImportError as e:
    sys.exit(f"numpy is not installed for python3 ({e})")
try:
    config = str(np.show_config(mode="dicts")).lower()
except Exception:
    config = ""
blas = next((name for key, name in (("openblas", "OpenBLAS"), ("mkl", "MKL"), ("accelerate", "Accelerate"), ("blis", "BLIS")) if key in config), "unknown-BLAS")
best = (0.0, 0)
rng = np.random.default_rng(0)
for n in (1024, 2048):
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    np.dot(a, b)  # warm-up: thread pool start
    for _ in range(3):
        t = time.perf_counter()
        np.dot(a, b)
        best = max(best, (2 * n**3 / (time.perf_counter() - t) / 1e9, n))
print(best[0], best[1], np.__version__, blas)
`;
  let out: string;
  try {
    out = execFileSync('python3', ['-c', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
  } catch (e) {
    const err = e as { code?: string; stderr?: string; message?: string };
    return { missing: err.code === 'ENOENT' ? 'python3 not found' : (err.stderr?.trim().split('\n').at(-1) ?? err.message ?? String(e)) };
  }
  const [gflops, n, version, blas] = out.trim().split(' ');
  return { gflops: Number(gflops), blas: blas!, what: `numpy ${version} float32 dot ${n}³, best of 3` };
}

// ---- main --------------------------------------------------------------------------------

/** Three significant digits, without exponents. */
function fmt(x: number): string {
  if (!Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x.toFixed(Math.max(0, Math.min(6, 2 - Math.floor(Math.log10(Math.abs(x) || 1)))));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dtype: { type: 'string' },
      filter: { type: 'string' },
      'conv-variant': { type: 'string' },
      reps: { type: 'string', default: '5' },
      budget: { type: 'string', default: '3' },
      quick: { type: 'boolean', default: false },
      small: { type: 'boolean', default: false },
      json: { type: 'string' },
      markdown: { type: 'string' },
      tuned: { type: 'boolean', default: false },
      tune: { type: 'boolean', default: false },
      'tuning-dir': { type: 'string' },
      'time-limit': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const reps = Number(values.reps);
  const budgetMs = Number(values.budget) * 1000;
  if (!(Number.isInteger(reps) && reps >= 1) || !(budgetMs > 0)) throw new Error(`bench-kernels: --reps must be a positive integer and --budget positive\n${USAGE}`);
  const timeLimit = values['time-limit'] === undefined ? null : Number(values['time-limit']);
  if (timeLimit !== null && !(timeLimit > 0)) throw new Error(`bench-kernels: --time-limit must be a positive number of seconds, got ${values['time-limit']}\n${USAGE}`);
  const deadline = timeLimit === null ? Infinity : performance.now() + timeLimit * 1000;
  if (values.dtype !== undefined && values.dtype !== 'f16' && values.dtype !== 'f32') throw new Error(`bench-kernels: --dtype must be f16 or f32\n${USAGE}`);

  const variant = values['conv-variant'];
  if (variant !== undefined && !(CONV2D_VARIANTS as readonly string[]).includes(variant)) throw new Error(`bench-kernels: --conv-variant must be one of ${CONV2D_VARIANTS.join(', ')}\n${USAGE}`);
  convVariant = variant as Conv2dVariant | undefined;

  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const gpu = await openNodeGpu({ profile: true });
  try {
    const dtype: DType = (values.dtype as DType | undefined) ?? (gpu.f16 ? 'f16' : 'f32');
    if (dtype === 'f16' && !gpu.f16) throw new Error('bench-kernels: --dtype f16 needs an adapter with shader-f16');
    const bpe = bytesPerElement(dtype);
    console.log(`adapter: ${gpu.adapterName}`);
    console.log(`dtype: ${dtype}; timer: ${gpu.profiler ? 'GPU timestamps' : 'wall clock'}; reps ≤ ${reps}; budget ${budgetMs / 1000} s per case`);

    const peak = await matmulPeak(gpu, dtype, reps);
    const sgemm = cpuSgemm();
    const bandwidth = await copyBandwidth(gpu);
    const reference =
      'gflops' in sgemm
        ? `CPU ${sgemm.blas} sgemm ${fmt(sgemm.gflops)} GFLOP/s (${sgemm.what}): best matmul / ${sgemm.blas} sgemm = ${fmt((100 * peak.gflops) / sgemm.gflops)}%`
        : `no CPU sgemm reference: ${sgemm.missing}`;
    const ceiling = `ceiling: ${fmt(peak.gflops)} GFLOP/s (matmul ${peak.size}³ ${dtype}, tiles: ${peak.all}); ${fmt(bandwidth)} GB/s (buffer copy, read + write); ${reference}`;
    console.log(ceiling);

    const file = JSON.parse(readFileSync(SHAPES_FILE, 'utf8')) as { calls: Call[] };
    let cases = distinctCases(file.calls);
    if (values.small) {
      // The cheapest case of each kernel variant (linear[gemv], linear[small], …, conv2d, …).
      const variants = [...new Set(cases.map((c) => c.kernel))];
      const cost = (c: Case): number => c.flops + c.elements;
      cases = variants.map((k) => cases.filter((c) => c.kernel === k).sort((a, b) => cost(a) - cost(b))[0]!);
    } else if (values.quick) {
      const kernels = [...new Set(cases.map((c) => c.kernel.replace(/\[.*/, '')))];
      cases = kernels.flatMap((k) => cases.filter((c) => c.kernel.startsWith(k)).sort((a, b) => b.calls - a.calls).slice(0, 2));
    }
    const filter = values.filter;
    if (filter) cases = cases.filter((c) => `${c.kernel} ${c.shape}`.includes(filter));

    if (values.tuned && values.tune) throw new Error('bench-kernels: --tuned (the stored choices) or --tune (measured now), not both');
    const stored = values.tuned ? await loadTuningTable(nodeTuningStore(values['tuning-dir']), gpu.adapter) : null;
    if (values.tuned) console.log(stored ? `tuned: ${Object.keys(stored.entries).length} stored choice(s) for this adapter` : 'tuned: no stored table for this adapter (sdxl-turbo tune)');
    const compare = values.tuned || values.tune;
    const header = ['kernel', 'shape', 'calls', 'reps', 'median ms', 'GFLOP/s', 'GB/s', '% of ceiling', 'rel. L2 error', ...(compare ? ['tuned variant', 'tuned ms', 'speed-up'] : [])];
    const rows: string[][] = [];
    const skipped: string[] = [];
    const notRun: string[] = [];
    const failed: string[] = [];
    const results: Array<Record<string, unknown>> = [];
    let stepMs = 0;
    let tunedStepMs = 0;
    for (const c of cases) {
      if (performance.now() > deadline) {
        notRun.push(`${c.kernel} ${c.shape}`);
        continue;
      }
      const bytes = c.elements * bpe;
      const boundMs = Math.max(c.flops / (peak.gflops * 1e6), bytes / (bandwidth * 1e6));
      if (boundMs > budgetMs / 2) {
        skipped.push(`${c.kernel} ${c.shape}`);
        continue;
      }
      const setup = c.prepare(gpu, dtype);
      const out = setup.run();
      const error = await setup.check(out);
      out.release();
      // The heuristic's variants (gpu.tuning holds no choice yet), and the calls it makes.
      const observed: TunableCall[] = [];
      gpu.tuning.observe((call) => observed.push(call));
      const { ms, reps: done } = await measure(gpu, () => setup.run().release(), reps, budgetMs);
      gpu.tuning.observe(null);
      const tuned = compare ? await tunedTiming(gpu, setup, dedupe(observed), stored && tuningChoices(stored), reps, budgetMs) : null;
      setup.release();
      stepMs += c.calls * ms;
      tunedStepMs += c.calls * (tuned?.ms ?? ms);
      const ok = error <= TOLERANCE[dtype]; // false for NaN too
      if (!ok) failed.push(`${c.kernel} ${c.shape} (${error.toExponential(1)})`);
      if (tuned?.error != null && !(tuned.error <= TOLERANCE[dtype])) failed.push(`${c.kernel} ${c.shape} tuned ${tuned.variants} (${tuned.error.toExponential(1)})`);
      const tunedCells = !compare ? [] : tuned ? [tuned.variants, fmt(tuned.ms ?? ms), `${(ms / (tuned.ms ?? ms)).toFixed(2)}×`] : [stored ? 'no entry' : 'heuristic', fmt(ms), '1.00×'];
      const row = [c.kernel, c.shape, String(c.calls), String(done), fmt(ms), c.flops ? fmt(c.flops / (ms * 1e6)) : '-', fmt(bytes / (ms * 1e6)), fmt((100 * boundMs) / ms), `${error.toExponential(1)}${ok ? '' : ' ✗'}`, ...tunedCells];
      rows.push(row);
      results.push({ kernel: c.kernel, shape: c.shape, calls: c.calls, reps: done, medianMs: ms, gflops: c.flops ? c.flops / (ms * 1e6) : null, gbps: bytes / (ms * 1e6), percentOfCeiling: (100 * boundMs) / ms, relL2Error: error, ok, ...(compare ? { tunedVariants: tuned?.variants ?? null, tunedMedianMs: tuned?.ms ?? ms, tunedRelL2Error: tuned?.error ?? null } : {}) });
      console.log(row.join('  '));
    }
    const table = markdownTable(header, rows, new Set([2, 3, 4, 5, 6, 7, 8, 10, 11]));
    const summary = [
      `Σ calls × median over the ${rows.length} cases run: ${fmt(stepMs)} ms per UNet step (${dtype})${compare ? `, heuristic variants; ${fmt(tunedStepMs)} ms with the ${values.tuned ? 'stored' : 'measured'} choices (${(stepMs / tunedStepMs).toFixed(2)}×)` : ''}`,
      ...(skipped.length ? [`skipped ${skipped.length} case(s) whose roofline estimate exceeds half the --budget: ${skipped.join('; ')}`] : []),
      ...(notRun.length ? [`not run: ${notRun.length} case(s) after --time-limit ${timeLimit} s: ${notRun.join('; ')}`] : []),
      `checked ${rows.length} case(s) against the float64 references on ${SAMPLES} sampled outputs each (tolerance ${TOLERANCE[dtype]})`,
    ];
    console.log(`\n${table}\n`);
    for (const line of summary) console.log(line);
    if (values.markdown) {
      const head = [`adapter: ${gpu.adapterName}`, `dtype: ${dtype}; timer: ${gpu.profiler ? 'GPU timestamps' : 'wall clock'}; reps ≤ ${reps}; budget ${budgetMs / 1000} s per case`, ceiling];
      writeFileSync(values.markdown, `${head.join('\n\n')}\n\n${table}\n\n${summary.join('\n\n')}\n`);
    }
    if (values.json) {
      const json = {
        date: new Date().toISOString(),
        argv: process.argv.slice(2),
        adapter: gpu.adapterName,
        dtype,
        timer: gpu.profiler ? 'timestamps' : 'wall',
        ceiling: { gflops: peak.gflops, matmulSize: peak.size, tile: peak.tile, tiles: peak.all, copyGBps: bandwidth, cpuSgemm: sgemm },
        cases: results,
        sumCallsTimesMedianMs: stepMs,
        ...(compare ? { tuning: values.tuned ? 'stored' : 'measured', sumCallsTimesTunedMedianMs: tunedStepMs } : {}),
        casesRun: rows.length,
        skipped,
        notRun,
        failed,
      };
      writeFileSync(values.json, `${JSON.stringify(json, null, 2)}\n`);
    }
    if (failed.length) throw new Error(`bench-kernels: ${failed.length} case(s) disagree with the reference: ${failed.join('; ')}`);
  } finally {
    gpu.dispose();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
