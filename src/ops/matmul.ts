// Linear layers and batched matmul: a tiled kernel (kernels/matmul.wgsl), and for a few rows
// against an (n, k) B the split-k gemv kernel (src/ops/matmul-gemv.ts). Both share bindings and
// uniforms, so the windowing below serves both.

import source from '../../kernels/matmul.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import type { Gpu } from '../gpu/runtime.js';
import { tunableOp } from '../gpu/tuning.js';
import { type DType, formatShape, Tensor } from '../tensor.js';
import { GEMV_ROWS, gemvKernel, gemvSpecialization, type MatmulSpecialization, matmulLayout } from './matmul-gemv.js';
import { type Q8Tensor, quantize } from './quantize.js';
import { synthetic } from './synthetic.js';
import { SUBGROUP_MATRIX_VARIANT, subgroupMatrixFits, subgroupMatrixSpecialization } from './matmul-subgroup-matrix.js';
import { bindingLimit, bindWhole, bindWindow, largestFitting, splitWindows, type Window, windowFits } from './windows.js';

const tiledKernel = defineKernel({ name: 'matmul', source, layout: matmulLayout });
const OP = tunableOp('matmul', [tiledKernel, gemvKernel]);
/** Up to this many rows (per batch) tuning also measures gemv. */
const GEMV_TUNE_ROWS = 64;

export interface MatmulTileConfig {
  /** Outputs per workgroup: m rows × n columns. */
  readonly m: number;
  readonly n: number;
  /** k values staged per step. */
  readonly k: number;
  /** Each invocation computes rows × cols outputs (cols 4 or 8; direct tiles also 16). */
  readonly rows: number;
  readonly cols: number;
  /** Stage the tiles in workgroup memory as f16 (half the bytes; only f16 inputs that need no
   *  rounding: no row norm, no Q8). */
  readonly f16?: boolean;
  /** No staging (kernels/matmul.wgsl DIRECT): one row of m / rows invocations, each all n (=
   *  cols) columns of its rows, B read at workgroup-uniform addresses (with
   *  subgroups, each column quad loaded once per 4 lanes and shared); k is unused. */
  readonly direct?: boolean;
}

/** The kernel's tile specializations. 8 × 8 outputs per invocation read 2/3 of the workgroup
 *  memory per FMA of 8 × 4 (on lavapipe, where an invocation is a SIMD lane, large8 was 1.2–1.3×
 *  large in loaded 512³ runs, not in a 256³ one: BENCHMARKS.md); TILE_K 32 halves
 *  the barriers; the `h` tiles stage f16. The ones over 16 KiB of workgroup memory run only where
 *  the device allows it; which is fastest is the adapter's (`sdxl-turbo tune`). */
export const MATMUL_TILES = {
  small: { m: 32, n: 32, k: 16, rows: 4, cols: 4 }, // 64 invocations
  medium: { m: 64, n: 64, k: 16, rows: 4, cols: 4 }, // 256 invocations
  large: { m: 128, n: 64, k: 16, rows: 8, cols: 4 }, // 256 invocations, twice the work each
  large8: { m: 128, n: 64, k: 16, rows: 8, cols: 8 }, // 128 invocations; 15 KiB
  deep8: { m: 128, n: 64, k: 32, rows: 8, cols: 8 }, // 27 KiB
  deep8h: { m: 128, n: 64, k: 32, rows: 8, cols: 8, f16: true }, // 13.5 KiB
  wide8h: { m: 128, n: 128, k: 16, rows: 8, cols: 8, f16: true }, // 256 invocations; 10 KiB
  // 32 invocations each, for SIMD CPUs (llvmpipe), where a workgroup-memory read is a gather.
  // 4 × 8 wastes fewer rows on short inputs (77 tokens). The 16-column tiles pay off where
  // subgroups share B's loads (loaded per invocation, 4 × 16 measured about half of 8 × 8).
  direct8x8: { m: 256, n: 8, k: 4, rows: 8, cols: 8, direct: true },
  direct4x8: { m: 128, n: 8, k: 4, rows: 4, cols: 8, direct: true },
  direct8x16: { m: 256, n: 16, k: 4, rows: 8, cols: 16, direct: true },
  direct4x16: { m: 128, n: 16, k: 4, rows: 4, cols: 16, direct: true },
} as const satisfies Record<string, MatmulTileConfig>;
export type MatmulTile = keyof typeof MATMUL_TILES;
/** A tile of the tiled kernel, the gemv kernel (needs b as (n, k)), or the subgroup-matrix
 *  kernel (only on a Gpu whose self-check enabled it: not in MATMUL_VARIANTS). */
export type MatmulVariant = MatmulTile | 'gemv' | typeof SUBGROUP_MATRIX_VARIANT;
export const MATMUL_VARIANTS: ReadonlyArray<MatmulTile | 'gemv'> = [...(Object.keys(MATMUL_TILES) as MatmulTile[]), 'gemv'];

interface CommonOptions {
  /** Force a kernel variant (tests and benchmarks); default: chosen from the shape. */
  readonly variant?: MatmulVariant;
}

export interface LinearOptions extends CommonOptions {
  /** (..., N), added in the epilogue (e.g. a residual skip after `to_out` or `ff`). */
  readonly residual?: Tensor | null;
  /** Layer-normalise each row of x as it loads, (x − mean)·rsqrt(var + eps), without an affine
   *  (fold γ and β into weight and bias): a LayerNorm in front without its own pass. */
  readonly normEps?: number;
  /** diffusers' GEGLU in the epilogue: weight (2N, K) → h·gelu(g) (..., N), h the first N
   *  outputs, g the last N; the residual is added after. */
  readonly geglu?: boolean;
  /** x is an image (B, K, H, W) taken as its tokens (B, HW, K), read in place (no transpose). */
  readonly imageIn?: boolean;
  /** The output (and the residual) as an image (B, N, H, W) of the tokens x (B, HW, K). */
  readonly imageOut?: readonly [number, number];
}

export interface MatmulOptions extends CommonOptions {
  /** b is (B, N, K) instead of (B, K, N). */
  readonly transposeB?: boolean;
}

/** x (..., K) · weight (N, K)ᵀ + bias (N) [+ residual (..., N)] → (..., N); an 8-bit weight
 *  (Q8Tensor) is dequantized inside the kernel; LinearOptions for the fusions (image layouts in
 *  and out, a row norm, GEGLU). */
export function linear(x: Tensor, weight: Tensor | Q8Tensor, bias: Tensor | null = null, options: LinearOptions = {}): Tensor {
  const residual = options.residual ?? null;
  const { imageIn = false, imageOut } = options;
  const describe = (): string =>
    `x ${formatShape(x.shape)}${imageIn ? ' (an image)' : ''}, weight ${formatShape(weight.shape)}` +
    (bias ? `, bias ${formatShape(bias.shape)}` : '') +
    (residual ? `, residual ${formatShape(residual.shape)}` : '') +
    (imageOut ? `, output image ${imageOut.join('×')}` : '');
  const k = imageIn ? x.shape[1] : x.shape.at(-1);
  if (k === undefined || weight.shape.length !== 2 || weight.shape[1] !== k || (imageIn && x.shape.length !== 4)) {
    throw new Error(`linear: expected x ${imageIn ? '(B, K, H, W)' : '(..., K)'} and weight (N, K), got ${describe()}`);
  }
  const geglu = options.geglu === true;
  const wide = weight.shape[0]!;
  if (geglu && wide % 2 !== 0) throw new Error(`linear: GEGLU needs an even number of weight rows, got ${describe()}`);
  const n = geglu ? wide / 2 : wide;
  const tokens = imageIn ? [x.shape[0]!, x.shape[2]! * x.shape[3]!] : x.shape.slice(0, -1);
  const hw = imageIn ? tokens[1]! : imageOut ? imageOut[0] * imageOut[1] : 0;
  if (imageOut && (x.shape.length !== 3 || x.shape[1] !== hw)) {
    throw new Error(`linear: an image output needs x (B, H·W, K) of its pixels, got ${describe()}`);
  }
  const outShape = imageOut ? [x.shape[0]!, n, ...imageOut] : [...tokens, n];
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== wide)) throw new Error(`linear: bias must be (${wide}), got ${describe()}`);
  if (options.normEps !== undefined && !(options.normEps > 0 && Number.isFinite(options.normEps))) throw new Error(`linear: normEps ${options.normEps} must be a positive number`);
  if (residual && formatShape(residual.shape) !== formatShape(outShape)) {
    throw new Error(`linear: residual must be ${formatShape(outShape)}, got ${describe()}`);
  }
  const q8 = weight instanceof Tensor ? null : weight;
  checkDtypes('linear', [x, q8 ? null : (weight as Tensor), bias, residual], describe);
  return gemm({
    op: 'linear',
    a: x,
    b: q8 ? x : (weight as Tensor), // unused with q8
    q8,
    bias,
    residual,
    outShape,
    batch: 1,
    m: x.size / k,
    n,
    k,
    transposeB: true,
    bBatched: false,
    normEps: options.normEps ?? null,
    geglu,
    hw,
    imageIn,
    imageOut: imageOut !== undefined,
    options,
  });
}

/** Batched a (B, M, K) · b (B, K, N) → (B, M, N); `transposeB` takes b as (B, N, K). */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const transposeB = options.transposeB === true;
  const describe = (): string => `a ${formatShape(a.shape)}, b ${formatShape(b.shape)}${transposeB ? ' (transposeB)' : ''}`;
  if (a.shape.length !== 3 || b.shape.length !== 3) throw new Error(`matmul: expected rank-3 tensors, got ${describe()}`);
  const [batch, m, k] = a.shape as [number, number, number];
  const [bb, b1, b2] = b.shape as [number, number, number];
  const [bk, n] = transposeB ? [b2, b1] : [b1, b2];
  if (bb !== batch || bk !== k) {
    throw new Error(`matmul: expected b ${transposeB ? `(${batch}, N, ${k})` : `(${batch}, ${k}, N)`}, got ${describe()}`);
  }
  checkDtypes('matmul', [a, b], describe);
  return gemm({
    op: 'matmul',
    a,
    b,
    q8: null,
    bias: null,
    residual: null,
    outShape: [batch, m, n],
    batch,
    m,
    n,
    k,
    transposeB,
    bBatched: true,
    normEps: null,
    geglu: false,
    hw: 0,
    imageIn: false,
    imageOut: false,
    options,
  });
}

function checkDtypes(op: string, tensors: ReadonlyArray<Tensor | null>, describe: () => string): void {
  const present = tensors.filter((t): t is Tensor => t !== null);
  const dtype = present[0]!.dtype;
  if (present.some((t) => t.dtype !== dtype)) {
    throw new Error(`${op}: mixed dtypes (${present.map((t) => t.dtype).join(', ')}) for ${describe()}`);
  }
  if (dtype === 'f16' && !present[0]!.gpu.f16) throw new Error(`${op}: f16 tensors need the shader-f16 feature (${describe()})`);
}

interface Gemm {
  readonly op: string;
  readonly a: Tensor;
  readonly b: Tensor;
  /** An 8-bit Linear weight read in b's place. */
  readonly q8: Q8Tensor | null;
  readonly bias: Tensor | null;
  readonly residual: Tensor | null;
  readonly outShape: readonly number[];
  readonly batch: number;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly transposeB: boolean;
  /** b has one matrix per batch (matmul) rather than one for all (a Linear weight). */
  readonly bBatched: boolean;
  /** LinearOptions.normEps, or null. */
  readonly normEps: number | null;
  readonly geglu: boolean;
  /** Pixels per image of the image layouts (LinearOptions.imageIn / imageOut), else 0. */
  readonly hw: number;
  readonly imageIn: boolean;
  readonly imageOut: boolean;
  readonly options: CommonOptions;
}

/** The default variant: gemv for up to GEMV_ROWS rows against an (n, k) B, else the largest
 *  tile that still gives the GPU enough workgroups to fill it. */
export function pickVariant(batch: number, m: number, n: number, transposeB: boolean): MatmulVariant {
  if (transposeB && m <= GEMV_ROWS) return 'gemv';
  const groups = (t: MatmulTileConfig): number => batch * Math.ceil(m / t.m) * Math.ceil(n / t.n);
  if (groups(MATMUL_TILES.large) >= 256) return 'large';
  if (groups(MATMUL_TILES.medium) >= 128) return 'medium';
  return 'small';
}

/** The call has a fusion only the tiled kernel has. */
const fused = (g: Gemm): boolean => g.normEps !== null || g.geglu || g.hw > 0;

/** Invocations per workgroup of a tile (kernels/matmul.wgsl WX × WY). */
const tileThreads = (tile: MatmulTileConfig): number => (tile.direct ? 1 : tile.n / tile.cols) * (tile.m / tile.rows);

/** Why `variant` cannot run the call `g`, or null when it can. */
function invalidFor(variant: MatmulVariant, g: Gemm): string | null {
  if (variant === SUBGROUP_MATRIX_VARIANT) return null; // subgroupMatrixSpecialization says why it cannot run
  if (variant === 'gemv') {
    if (!g.transposeB) return 'needs b as (N, K)';
    if (g.normEps !== null) return 'has no row norm (use a tile)';
    if (g.geglu) return 'has no GEGLU (use a tile)';
    if (g.hw) return 'has no image layout (use a tile)';
    return null;
  }
  const tile: MatmulTileConfig = MATMUL_TILES[variant];
  const threads = tileThreads(tile);
  if (tile.direct) {
    if (tile.n !== tile.cols) return 'is direct: each invocation computes all n columns (n must equal cols)';
  } else {
    if (((tile.m * tile.k) / 4) % threads !== 0 || ((tile.n * tile.k) / 4) % threads !== 0) return `does not divide its loads evenly among ${threads} invocations`;
    if (g.normEps !== null && threads % tile.m !== 0) return 'has no whole number of invocations per row for the row norm';
  }
  if (tile.f16 && (g.a.dtype !== 'f16' || g.normEps !== null || g.q8)) return 'stages f16 tiles: it needs f16 inputs without a row norm or Q8 weight (which would round)';
  const limits = g.a.gpu.limits;
  if (threads > limits.maxComputeInvocationsPerWorkgroup) return `needs ${threads} invocations per workgroup (the device allows ${limits.maxComputeInvocationsPerWorkgroup})`;
  if (tileBytes(tile, g.normEps !== null) > limits.maxComputeWorkgroupStorageSize) {
    return `needs ${tileBytes(tile, g.normEps !== null)} bytes of workgroup memory (the device allows ${limits.maxComputeWorkgroupStorageSize})`;
  }
  return null;
}

/** Workgroup memory of a tile (kernels/matmul.wgsl): padded A and B tiles, the row norm's stats
 *  (direct: their one-element stand-ins). */
function tileBytes(tile: MatmulTileConfig, norm: boolean): number {
  if (tile.direct) return 48;
  const threads = tileThreads(tile);
  return (tile.m + tile.n) * (tile.k / 4 + 1) * (tile.f16 ? 8 : 16) + (norm ? (tile.m + threads) * 8 : 16);
}

function specialization(variant: MatmulVariant, g: Gemm): MatmulSpecialization {
  const { a: { dtype }, k, transposeB, op } = g;
  const problem = invalidFor(variant, g);
  if (problem) throw new Error(`${op}: the ${variant} variant ${problem}`);
  const q8 = g.q8 !== null;
  if (variant === 'gemv') return gemvSpecialization(dtype, k, q8);
  // The subgroup-matrix variant (src/ops/matmul-subgroup-matrix.ts), kept apart from the tiles.
  if (variant === SUBGROUP_MATRIX_VARIANT) return subgroupMatrixSpecialization(g.a.gpu, { dtype, q8, fused: fused(g) });
  const tile: MatmulTileConfig = MATMUL_TILES[variant];
  const vec = k % 4 === 0; // rows along k start 16/8-byte aligned
  const direct = tile.direct === true;
  return {
    kernel: tiledKernel,
    defines: {
      // Direct f16 tiles read A and B as 32-bit words: llvmpipe loads a vec4<f16> per invocation
      // as four 16-bit loads, a vec2<u32> as two (1.7× the 1024³ matmul: BENCHMARKS.md).
      T: dtype, AB: direct && dtype === 'f16' ? 'vec2<u32>' : `vec4<${dtype}>`, SUBGROUPS: direct && g.a.gpu.subgroups,
      WT: tile.f16 ? 'f16' : 'f32', TILE_M: tile.m, TILE_N: tile.n, TILE_K: tile.k, ROWS: tile.rows, COLS: tile.cols, DIRECT: direct,
      VEC_A: vec, VEC_B: vec && transposeB && !q8, Q8: q8,
      NORM_A: g.normEps !== null, GEGLU: g.geglu, A_IMAGE: g.imageIn, C_IMAGE: g.imageOut,
    },
    groupRows: tile.m,
    // GEGLU: half the tile's columns are the gates of the other half.
    groupCols: g.geglu ? tile.n / 2 : tile.n,
  };
}

/** The variant for `g`: the tuned choice for this adapter, else pickVariant. */
function chooseVariant(g: Gemm): MatmulVariant {
  const { a, batch, m, n, k } = g;
  const gemvFits = invalidFor('gemv', g) === null;
  const candidates: MatmulVariant[] = MATMUL_VARIANTS.filter((v) => invalidFor(v, g) === null && (v !== 'gemv' || m <= GEMV_TUNE_ROWS));
  // Only where the device's start-up self-check enabled it (opt-in): then tune measures it too.
  if (subgroupMatrixFits(a.gpu, { dtype: a.dtype, q8: g.q8 !== null, fused: fused(g) })) candidates.push(SUBGROUP_MATRIX_VARIANT);
  const gpuPick = pickVariant(batch, m, n, gemvFits);
  // A CPU adapter has no parallelism to fill: the direct tiles (no workgroup memory, the weight
  // read at uniform addresses) won 9 of the 10 UNet Linear shapes on llvmpipe, 1.4–6× (BENCHMARKS.md
  // "Direct matmul tiles", 2026-12-07); 8 rows per invocation from 256 rows (1.04–1.44× the 4 of
  // direct4x8 on every 256-row UNet Linear: "A whole UNet step tuned on top of the CPU
  // heuristics"), 4 below. With subgroups (B's columns shared across lanes) 16 columns: tuning
  // took them for 8 of the 10 UNet Linear shapes, 1.1–2.1× ("Shared weights", 2026-12-07).
  const cols = a.gpu.subgroups ? 16 : 8;
  const picked = a.gpu.tuning.cpu && gpuPick !== 'gemv' ? (`direct${m >= 256 ? 8 : 4}x${cols}` as MatmulTile) : gpuPick;
  // pickVariant sizes tiles for the GPU's parallelism; a device with the default 16 KiB of
  // workgroup memory cannot run every tile (large with the row norm needs 18 KiB): the next smaller.
  const heuristic = candidates.includes(picked) ? picked : (['medium', 'small'] as const).find((t) => candidates.includes(t))!;
  const flags = [
    g.transposeB && 'tB', g.bBatched && 'bB', g.bias && 'bias', g.residual && 'res', g.normEps !== null && 'norm', g.geglu && 'geglu',
    g.imageIn && 'imgIn', g.imageOut && 'imgOut', g.q8 && 'q8',
  ].filter(Boolean);
  const key = `${a.dtype} ${batch}×${m}×${k}→${n} ${g.hw} ${flags.join(' ')}`;
  return a.gpu.tuning.choose(OP, key, candidates, heuristic, () => ({
    label: `${g.op} ${batch > 1 ? `${batch}×` : ''}${m}×${k}→${n} ${flags.join(' ')} ${a.dtype}`,
    prepare: (gpu) => {
      const made: Array<{ release(): void }> = [];
      const fill = (name: string, t: { shape: readonly number[] }): Tensor => {
        const s = synthetic(gpu, `tune.matmul.${name}`, t.shape, a.dtype);
        made.push(s);
        return s;
      };
      const xs = fill('a', a);
      let q8: Q8Tensor | null = null;
      if (g.q8) {
        const w = fill('weight', g.q8);
        q8 = quantize(w);
        made.push(q8);
      }
      const inputs = { a: xs, b: q8 ? xs : fill('b', g.b), q8, bias: g.bias && fill('bias', g.bias), residual: g.residual && fill('residual', g.residual) };
      return {
        run: (variant) => gemm({ ...g, ...inputs, options: { variant } }).release(),
        dispose: () => made.forEach((t) => t.release()),
      };
    },
  }));
}

/** One dispatch: batches [z, z + batches), rows [row, row + rows) of each. */
interface GemmWindow {
  readonly z: number;
  readonly batches: number;
  readonly row: number;
  readonly rows: number;
}

/** A and B are declared vec4 arrays, whose length WGSL rounds down: bind whole 16 bytes. */
const VEC4 = { vec4: true } as const;

/** Elements of a (m, rowLen) per-batch matrix that window `w` covers. */
function span(w: GemmWindow, m: number, rowLen: number): Window {
  const start = w.z * m * rowLen + w.row * rowLen;
  return { start, count: (w.z + w.batches - 1) * m * rowLen + (w.row + w.rows) * rowLen - start };
}

/** Whole batches while every operand's share fits one binding, else row ranges of one batch.
 *  Only activations are split: a Linear weight (≤ 26 MB at real size) is bound whole. */
function planWindows(g: Gemm, groupRows: number): GemmWindow[] {
  const { a, m, n, k, batch } = g;
  const gpu = a.gpu;
  const maxDim = gpu.limits.maxComputeWorkgroupsPerDimension;
  const maxRows = maxDim * groupRows;
  const fits = (w: GemmWindow): boolean => {
    const windows: Window[] = [span(w, m, k), span(w, m, n)]; // a; out and residual alike
    if (g.bBatched) windows.push({ start: w.z * k * n, count: w.batches * k * n });
    return w.rows <= maxRows && windows.every(({ start, count }) => windowFits(gpu, a.dtype, start, count, VEC4));
  };
  const windows: GemmWindow[] = [];
  for (let z = 0; z < batch; ) {
    const batches = largestFitting(Math.min(batch - z, maxDim), (nb) => fits({ z, batches: nb, row: 0, rows: m }));
    if (batches > 0) {
      windows.push({ z, batches, row: 0, rows: m });
      z += batches;
      continue;
    }
    const rows = splitWindows(
      m,
      (row, count) => fits({ z, batches: 1, row, rows: count }),
      () => `${g.op}: one row of a ${formatShape(a.shape)}${g.bBatched ? ` with one matrix of b ${formatShape(g.b.shape)}` : ''} exceeds the ${bindingLimit(gpu)}-byte binding limit`,
    );
    for (const r of rows) windows.push({ z, batches: 1, row: r.start, rows: r.count });
    z += 1;
  }
  return windows;
}

function gemm(g: Gemm): Tensor {
  const { a, b, bias, residual, batch, m, n, k } = g;
  const gpu: Gpu = a.gpu;
  const dtype: DType = a.dtype;
  if (m === 0 || n === 0 || k === 0 || batch === 0) {
    throw new Error(`${g.op}: empty product (batch ${batch}, m ${m}, n ${n}, k ${k})`);
  }
  const variant = g.options.variant ?? chooseVariant(g);
  const { kernel, defines, groupRows, groupCols } = specialization(variant, g);
  const bWhole = g.bBatched || g.q8 ? null : bindWhole(`${g.op} weight`, b, VEC4);
  const q8Binding = g.q8 ? bindWhole(`${g.op} weight`, g.q8.words) : null;
  const biasBinding = bias ? bindWhole(`${g.op} bias`, bias) : null;
  const windows = planWindows(g, groupRows);
  if (g.hw && windows.length > 1) throw new Error(`${g.op}: an image layout is bound whole, but x ${formatShape(a.shape)} exceeds the ${bindingLimit(gpu)}-byte binding limit`);

  const out = Tensor.empty(gpu, g.outShape, dtype, g.op);
  for (const w of windows) {
    const bind = (t: Tensor, { start, count }: Window) => bindWindow(g.op, t, start, count, VEC4);
    const wa = bind(a, span(w, m, k));
    const wc = bind(out, span(w, m, n));
    const wr = residual ? bind(residual, span(w, m, n)) : wa;
    // A Q8 weight is read at binding 6; the a window stands in for b.
    const wb = g.q8 ? wa : bWhole ? { binding: bWhole, base: 0 } : bind(b, { start: w.z * k * n, count: w.batches * k * n });
    gpu.dispatch({
      kernel,
      defines,
      uniforms: {
        m: w.rows,
        n,
        k,
        aBase: wa.base,
        bBase: wb.base,
        cBase: wc.base,
        residualBase: wr.base,
        aBatch: m * k,
        bBatch: g.bBatched ? k * n : 0,
        cBatch: m * n,
        bStrideN: g.transposeB ? k : 1,
        bStrideK: g.transposeB ? 1 : n,
        hasBias: bias ? 1 : 0,
        hasResidual: residual ? 1 : 0,
        q8Scales: g.q8?.scaleBase ?? 0,
        normEps: g.normEps ?? 0,
        hw: g.hw,
      },
      // Stand-ins for absent bias / residual / Q8 weight: a read-only binding the kernel never reads.
      bindings: [wa.binding, wb.binding, biasBinding ?? wa.binding, wr.binding, wc.binding, q8Binding ?? wa.binding],
      workgroups: [Math.ceil(n / groupCols), Math.ceil(w.rows / groupRows), w.batches],
    });
  }
  return out;
}
