// Linear layers and batched matmul: a tiled kernel (kernels/matmul.wgsl), and for a few rows
// against an (n, k) B a split-k variant (kernels/matmul-gemv.wgsl). Both share bindings and
// uniforms, so the windowing below serves both.

import gemvSource from '../../kernels/matmul-gemv.wgsl';
import source from '../../kernels/matmul.wgsl';
import { type Defines, defineKernel, type KernelSource } from '../gpu/pipeline-cache.js';
import type { Gpu } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { type BindingWindow, bindingWindow } from './binding-window.js';
import { bytesPerElement, type DType, formatShape, Tensor } from '../tensor.js';

const layout = uniforms(
  ['m', 'u32'],
  ['n', 'u32'],
  ['k', 'u32'],
  ['a_off', 'u32'],
  ['b_off', 'u32'],
  ['c_off', 'u32'],
  ['r_off', 'u32'],
  ['a_batch', 'u32'],
  ['b_batch', 'u32'],
  ['c_batch', 'u32'],
  ['b_sn', 'u32'],
  ['b_sk', 'u32'],
  ['has_bias', 'u32'],
  ['has_residual', 'u32'],
);
const tiledKernel = defineKernel('matmul', source, layout);
const gemvKernel = defineKernel('matmul-gemv', gemvSource, layout);
/** Rows per gemv workgroup (its ROWS) and columns (the kernel's COLS). */
const GEMV_ROWS = 4;
const GEMV_COLS = 8;

export interface MatmulTileConfig {
  /** Outputs per workgroup: m rows × n columns. */
  readonly m: number;
  readonly n: number;
  /** k values staged per step. */
  readonly k: number;
  /** Rows per invocation (each computes rows × 4 outputs). */
  readonly rows: number;
}

/** The kernel's tile specializations, smallest first. */
export const MATMUL_TILES = {
  small: { m: 32, n: 32, k: 16, rows: 4 }, // 64 invocations
  medium: { m: 64, n: 64, k: 16, rows: 4 }, // 256 invocations
  large: { m: 128, n: 64, k: 16, rows: 8 }, // 256 invocations, twice the work each
} as const satisfies Record<string, MatmulTileConfig>;
export type MatmulTile = keyof typeof MATMUL_TILES;
/** A tile of the tiled kernel, or the gemv kernel (needs b as (n, k)). */
export type MatmulVariant = MatmulTile | 'gemv';
export const MATMUL_VARIANTS: readonly MatmulVariant[] = [...(Object.keys(MATMUL_TILES) as MatmulTile[]), 'gemv'];

interface CommonOptions {
  /** Force a kernel variant (tests and benchmarks); default: chosen from the shape. */
  readonly variant?: MatmulVariant;
}

export interface LinearOptions extends CommonOptions {
  /** (..., N), added in the epilogue (e.g. a residual skip after `to_out` or `ff`). */
  readonly residual?: Tensor | null;
}

export interface MatmulOptions extends CommonOptions {
  /** b is (B, N, K) instead of (B, K, N). */
  readonly transposeB?: boolean;
}

/** x (..., K) · weight (N, K)ᵀ + bias (N) [+ residual (..., N)] → (..., N). */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null, options: LinearOptions = {}): Tensor {
  const residual = options.residual ?? null;
  const describe = (): string =>
    `x ${formatShape(x.shape)}, weight ${formatShape(weight.shape)}` +
    (bias ? `, bias ${formatShape(bias.shape)}` : '') +
    (residual ? `, residual ${formatShape(residual.shape)}` : '');
  const k = x.shape.at(-1);
  if (k === undefined || weight.shape.length !== 2 || weight.shape[1] !== k) {
    throw new Error(`linear: expected x (..., K) and weight (N, K), got ${describe()}`);
  }
  const n = weight.shape[0]!;
  const outShape = [...x.shape.slice(0, -1), n];
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== n)) throw new Error(`linear: bias must be (${n}), got ${describe()}`);
  if (residual && formatShape(residual.shape) !== formatShape(outShape)) {
    throw new Error(`linear: residual must be ${formatShape(outShape)}, got ${describe()}`);
  }
  checkDtypes('linear', [x, weight, bias, residual], describe);
  return gemm({
    op: 'linear',
    a: x,
    b: weight,
    bias,
    residual,
    outShape,
    batch: 1,
    m: x.size / k,
    n,
    k,
    transposeB: true,
    bBatched: false,
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
    bias: null,
    residual: null,
    outShape: [batch, m, n],
    batch,
    m,
    n,
    k,
    transposeB,
    bBatched: true,
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

// Windows are bound from an aligned offset at or below their first element (bindingWindow) and
// widened to whole 16 bytes: A and B are vec4 arrays, whose length WGSL rounds down. Pooled and
// exact buffers are 16-byte multiples, so the widening stays inside the buffer.
const WINDOW_SLACK = 256 + 16;

function window(op: string, t: Tensor, start: number, end: number): BindingWindow {
  const { binding, base } = bindingWindow(op, t, start, end - start);
  const offset = binding.offset ?? 0;
  return { binding: { ...binding, size: Math.min(Math.ceil(binding.size! / 16) * 16, t.buffer.size - offset) }, base };
}

interface Specialization {
  readonly kernel: KernelSource;
  readonly defines: Defines;
  /** Rows and columns of C per workgroup. */
  readonly groupRows: number;
  readonly groupCols: number;
}

function specialization(variant: MatmulVariant, dtype: DType, k: number, transposeB: boolean, op: string): Specialization {
  const vec = k % 4 === 0; // rows along k start 16/8-byte aligned
  if (variant === 'gemv') {
    if (!transposeB) throw new Error(`${op}: the gemv variant needs b as (N, K)`);
    return { kernel: gemvKernel, defines: { T: dtype, ROWS: GEMV_ROWS, VEC: vec }, groupRows: GEMV_ROWS, groupCols: GEMV_COLS };
  }
  const tile = MATMUL_TILES[variant];
  const threads = (tile.n / 4) * (tile.m / tile.rows);
  if (((tile.m * tile.k) / 4) % threads !== 0 || ((tile.n * tile.k) / 4) % threads !== 0) {
    throw new Error(`matmul: tile ${variant} does not divide its loads evenly among ${threads} invocations`);
  }
  return {
    kernel: tiledKernel,
    defines: { T: dtype, TILE_M: tile.m, TILE_N: tile.n, TILE_K: tile.k, ROWS: tile.rows, VEC_A: vec, VEC_B: vec && transposeB },
    groupRows: tile.m,
    groupCols: tile.n,
  };
}

function gemm(g: Gemm): Tensor {
  const { a, b, bias, residual, batch, m, n, k } = g;
  const gpu: Gpu = a.gpu;
  const dtype: DType = a.dtype;
  if (m === 0 || n === 0 || k === 0 || batch === 0) {
    throw new Error(`${g.op}: empty product (batch ${batch}, m ${m}, n ${n}, k ${k})`);
  }
  const variant = g.options.variant ?? pickVariant(batch, m, n, g.transposeB);
  const { kernel, defines, groupRows, groupCols } = specialization(variant, dtype, k, g.transposeB, g.op);

  // Windows: whole batches while each operand's share fits one binding, else row ranges of one
  // batch. Only activations are split: a Linear weight (≤ 26 MB at real size) is bound whole.
  const bpe = bytesPerElement(dtype);
  const limit = gpu.limits.maxStorageBufferBindingSize;
  const room = limit - WINDOW_SLACK;
  const bMatrix = k * n;
  if (bMatrix * bpe > room) {
    throw new Error(`${g.op}: one matrix of b ${formatShape(b.shape)} exceeds the ${limit}-byte binding limit`);
  }
  const maxDim = gpu.limits.maxComputeWorkgroupsPerDimension;
  const maxRows = maxDim * groupRows;
  const batchElems = Math.max(m * k, m * n, g.bBatched ? bMatrix : 0);
  const batchesPerWindow = Math.min(maxDim, Math.floor(room / (batchElems * bpe)));
  const windows: Array<{ z: number; batches: number; row: number; rows: number }> = [];
  if (batchesPerWindow >= 1 && m <= maxRows) {
    for (let z = 0; z < batch; z += batchesPerWindow) windows.push({ z, batches: Math.min(batchesPerWindow, batch - z), row: 0, rows: m });
  } else {
    const rowsPerWindow = Math.min(maxRows, Math.floor(room / (Math.max(k, n) * bpe)));
    if (rowsPerWindow < 1) throw new Error(`${g.op}: one row of ${formatShape(a.shape)} exceeds the ${limit}-byte binding limit`);
    for (let z = 0; z < batch; z++) {
      for (let row = 0; row < m; row += rowsPerWindow) windows.push({ z, batches: 1, row, rows: Math.min(rowsPerWindow, m - row) });
    }
  }

  const out = Tensor.empty(gpu, g.outShape, dtype, g.op);
  for (const w of windows) {
    const first = (stride: number, rowLen: number): number => w.z * stride + w.row * rowLen;
    const last = (stride: number, rowLen: number): number => (w.z + w.batches - 1) * stride + (w.row + w.rows) * rowLen;
    const wa = window(g.op, a, first(m * k, k), last(m * k, k));
    const wc = window(g.op, out, first(m * n, n), last(m * n, n));
    const wr = residual ? window(g.op, residual, first(m * n, n), last(m * n, n)) : wa;
    const wb = g.bBatched ? window(g.op, b, w.z * bMatrix, (w.z + w.batches) * bMatrix) : window(g.op, b, 0, b.size);
    gpu.dispatch({
      kernel,
      defines,
      layout,
      uniforms: {
        m: w.rows,
        n,
        k,
        a_off: wa.base,
        b_off: wb.base,
        c_off: wc.base,
        r_off: wr.base,
        a_batch: m * k,
        b_batch: g.bBatched ? bMatrix : 0,
        c_batch: m * n,
        b_sn: g.transposeB ? k : 1,
        b_sk: g.transposeB ? 1 : n,
        has_bias: bias ? 1 : 0,
        has_residual: residual ? 1 : 0,
      },
      // Stand-ins for absent bias / residual: a read-only binding the kernel never reads.
      bindings: [wa.binding, wb.binding, bias?.binding ?? wa.binding, wr.binding, wc.binding],
      workgroups: [Math.ceil(n / groupCols), Math.ceil(w.rows / groupRows), w.batches],
    });
  }
  return out;
}
