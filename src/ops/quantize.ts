// 8-bit weights (docs/Q8.md): Q8Tensor holds a Linear or conv weight as int8 values with one
// f16 scale per row and block of 32 along the row, in one GPU buffer; quantize() makes one from
// a float weight on the GPU (kernels/quantize.wgsl); the matmul, gemv and conv2d kernels read
// it through kernels/include/q8.wgsl, dequantizing as they load.

import source from '../../kernels/quantize.wgsl';
import { defineKernel, kernelSourceHash } from '../gpu/pipeline-cache.js';
import type { Gpu } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { f16ArrayToF32 } from '../f16.js';
import { formatShape, numel, Tensor } from '../tensor.js';
import { grid, WG } from './common.js';
import { bindWhole } from './windows.js';

/** Elements of a row that share one scale. */
export const Q8_BLOCK = 32;

const kernel = defineKernel({
  name: 'quantize',
  source,
  layout: uniforms(['rows', 'u32'], ['k', 'u32'], ['scaleBase', 'u32'], ['words', 'u32']),
  constants: { WG },
});

/** The quantize kernel's source hash: 8-bit weights kept from another kernel (the browser's
 *  cache) are not used. */
export const QUANTIZE_KERNEL_HASH = kernelSourceHash(kernel);

/** Rows (the first dim: output channels) and row length K (the rest) of a weight's shape. */
export function q8Dims(shape: readonly number[]): { rows: number; k: number; blocks: number } {
  const rows = shape[0] ?? 0;
  const k = numel(shape.slice(1));
  if (shape.length < 2 || rows < 1 || k < 1) throw new Error(`Q8: a weight (N, K, …) with N, K ≥ 1 is needed, got ${formatShape(shape)}`);
  return { rows, k, blocks: Math.ceil(k / Q8_BLOCK) };
}

/** The floats a Q8 weight holds, on the host: value × its block's f16 scale (exact in f32). */
export function dequantize(values: Int8Array, scales: Uint16Array, shape: readonly number[]): Float32Array {
  const { rows, k, blocks } = q8Dims(shape);
  if (values.length !== rows * k || scales.length !== rows * blocks) throw new Error(`Q8: ${values.length} int8 values and ${scales.length} scales for a weight ${formatShape(shape)} (want ${rows * k} and ${rows * blocks})`);
  const scale = f16ArrayToF32(scales);
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i]! * scale[Math.floor(i / k) * blocks + Math.floor((i % k) / Q8_BLOCK)]!;
  return out;
}

/** GPU bytes of a Q8 weight of `shape`: the value words, then the scale words. */
export function q8Bytes(shape: readonly number[]): number {
  const { rows, k, blocks } = q8Dims(shape);
  return 4 * (Math.ceil((rows * k) / 4) + Math.ceil((rows * blocks) / 2));
}

/**
 * A Q8 weight of `shape` (N, K) or (O, C, kh, kw): int8 values, row-major, four per u32 word,
 * then from word `scaleBase` the (N, ceil(K / 32)) f16 scales, two per word. `words` is a
 * 32-bit tensor of those raw words (nothing computes on it as floats), allocated outside the
 * pool as weights are.
 */
export class Q8Tensor {
  readonly rows: number;
  /** Row length: in features, or C·kh·kw. */
  readonly k: number;
  /** Scales per row. */
  readonly blocks: number;
  /** The word where the scales start. */
  readonly scaleBase: number;

  private constructor(readonly words: Tensor, readonly shape: readonly number[]) {
    ({ rows: this.rows, k: this.k, blocks: this.blocks } = q8Dims(shape));
    this.scaleBase = Math.ceil((this.rows * this.k) / 4);
  }

  /** Uninitialized (the dry run's shape-only weights; quantize() fills one). */
  static empty(gpu: Gpu, shape: readonly number[], label: string): Q8Tensor {
    return new Q8Tensor(Tensor.empty(gpu, [q8Bytes(shape) / 4], 'f32', label, true), shape);
  }

  /** From host data: int8 values (N·K, row-major) and f16 scale bits (N·ceil(K / 32)). */
  static upload(gpu: Gpu, values: Int8Array, scales: Uint16Array, shape: readonly number[], label: string): Q8Tensor {
    const q = Q8Tensor.empty(gpu, shape, label);
    if (values.length !== q.rows * q.k || scales.length !== q.rows * q.blocks) {
      q.release();
      throw new Error(`${label}: ${values.length} int8 values and ${scales.length} scales for a Q8 weight ${formatShape(shape)} (want ${q.rows * q.k} and ${q.rows * q.blocks})`);
    }
    const bytes = new Uint8Array(q.byteLength);
    bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.length));
    bytes.set(new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength), q.scaleBase * 4);
    gpu.write(q.words.buffer, bytes);
    return q;
  }

  get gpu(): Gpu {
    return this.words.gpu;
  }

  get byteLength(): number {
    return this.words.byteLength;
  }

  /** The values and scales read back (waits for all recorded work): what a Q8 file stores. */
  async read(): Promise<{ values: Int8Array; scales: Uint16Array }> {
    const raw = await this.gpu.read(this.words.buffer, 0, this.byteLength);
    return {
      values: new Int8Array(raw, 0, this.rows * this.k),
      scales: new Uint16Array(raw.slice(this.scaleBase * 4, this.scaleBase * 4 + this.rows * this.blocks * 2)),
    };
  }

  release(): void {
    this.words.release();
  }
}

/** A float weight (N, K, …) as a Q8Tensor, quantized on the GPU; `w` stays (the caller releases it). */
export function quantize(w: Tensor, label = 'quantize'): Q8Tensor {
  return quantizeInto(w, Q8Tensor.empty(w.gpu, w.shape, label));
}

/** quantize() into `q`, a Q8Tensor of w's shape, every word of which it writes. */
export function quantizeInto(w: Tensor, q: Q8Tensor): Q8Tensor {
  const gpu = w.gpu;
  if (formatShape(q.shape) !== formatShape(w.shape)) throw new Error(`quantize: weight ${formatShape(w.shape)} into a Q8 weight ${formatShape(q.shape)}`);
  const bindings = [bindWhole('quantize weight', w), bindWhole('quantize output', q.words)];
  const scaleWords = Math.ceil((q.rows * q.blocks) / 2);
  const valueWords = q.scaleBase;
  // The scales first: the values pass divides by them as stored (f16).
  for (const [pass, words] of [[0, scaleWords], [1, valueWords]] as const) {
    gpu.dispatch({
      kernel,
      defines: { T: w.dtype, PASS: pass },
      uniforms: { rows: q.rows, k: q.k, scaleBase: q.scaleBase, words },
      bindings,
      workgroups: grid(words),
    });
  }
  return q;
}
