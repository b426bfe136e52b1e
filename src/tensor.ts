// Tensor: a GPU buffer with a shape and a storage dtype. Activations come from the
// runtime's buffer pool and go back to it on release() or when their scope ends (scope.ts);
// weights are exact-sized.

import { f16ArrayToF32, f32ToF16Bits } from './f16.js';
import type { Gpu } from './gpu/runtime.js';
import { castOnGpu } from './ops/cast.js';
import { adopt, type Owned, STORAGE } from './scope.js';

export { chain, keep, take, tidy } from './scope.js';

export type DType = 'f16' | 'f32';
/** Formats a host array can arrive in: f32 values, or raw 16-bit float bits. */
export type HostFormat = 'f32' | 'f16' | 'bf16';

export const bytesPerElement = (dtype: DType | HostFormat): number => (dtype === 'f32' ? 4 : 2);

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function formatShape(shape: readonly number[]): string {
  return `(${shape.join(', ')})`;
}

/** A tensor's memory, shared with its reshape views. */
class Storage implements Owned {
  released = false;

  constructor(readonly gpu: Gpu, readonly buffer: GPUBuffer, readonly pooled: boolean) {
    // An activation belongs to the innermost scope, if any; a weight to its registry.
    if (pooled) adopt(this);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.pooled) this.gpu.pool.release(this.buffer);
    else {
      // Recorded dispatches may still bind it: submit them before destroying the buffer.
      this.gpu.flush();
      this.buffer.destroy();
    }
  }
}

export class Tensor {
  private constructor(
    readonly gpu: Gpu,
    private readonly storage: Storage,
    readonly shape: readonly number[],
    readonly dtype: DType,
  ) {
    for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new Error(`invalid tensor shape ${formatShape(shape)}`);
  }

  /** An uninitialized pooled tensor. */
  static empty(gpu: Gpu, shape: readonly number[], dtype: DType, label = 'activation'): Tensor {
    const bytes = storageBytes(shape, dtype);
    return new Tensor(gpu, new Storage(gpu, gpu.pool.acquire(bytes, label), true), shape, dtype);
  }

  /** An uninitialized exact-sized tensor outside the pool: a dry run's shape-only weight. */
  static exact(gpu: Gpu, shape: readonly number[], dtype: DType, label: string): Tensor {
    return new Tensor(gpu, new Storage(gpu, gpu.pool.allocateExact(storageBytes(shape, dtype), label), false), shape, dtype);
  }

  /**
   * Uploads host data, converting on the GPU when `format` differs from `dtype`.
   * `f16`/`bf16` data are raw 16-bit patterns. `exact` allocates outside the pool (weights).
   */
  static upload(
    gpu: Gpu,
    data: Float32Array | Uint16Array,
    format: HostFormat,
    shape: readonly number[],
    dtype: DType,
    options: { label?: string; exact?: boolean } = {},
  ): Tensor {
    const label = options.label ?? 'upload';
    const n = numel(shape);
    if (data.length !== n) throw new Error(`${label}: ${data.length} values for shape ${formatShape(shape)} (${n} elements)`);
    if ((format === 'f32') !== data instanceof Float32Array) throw new Error(`${label}: ${format} data must come as ${format === 'f32' ? 'Float32Array' : 'Uint16Array'}`);
    const make = (bytes: number, d: DType): Tensor => {
      const exact = options.exact === true;
      const buffer = exact ? gpu.pool.allocateExact(bytes, label) : gpu.pool.acquire(bytes, label);
      return new Tensor(gpu, new Storage(gpu, buffer, !exact), shape, d);
    };
    if (format === dtype) {
      const t = make(storageBytes(shape, dtype), dtype);
      gpu.write(t.buffer, data);
      return t;
    }
    const staged = Tensor.empty(gpu, [Math.ceil(data.byteLength / 4)], 'f32', `${label} (staging)`);
    gpu.write(staged.buffer, data);
    const out = make(storageBytes(shape, dtype), dtype);
    castOnGpu(gpu, staged.buffer, format, out.buffer, dtype, n);
    staged.release();
    return out;
  }

  get size(): number {
    return numel(this.shape);
  }

  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  get buffer(): GPUBuffer {
    if (this.storage.released) throw new Error(`tensor ${formatShape(this.shape)} used after release()`);
    return this.storage.buffer;
  }

  /** The whole tensor as a storage binding (rounded up to whole 4-byte words). */
  get binding(): GPUBufferBinding {
    return { buffer: this.buffer, offset: 0, size: storageBytes(this.shape, this.dtype) };
  }

  /** A view with another shape over the same storage: releasing either releases both. */
  reshape(shape: readonly number[]): Tensor {
    if (numel(shape) !== this.size) throw new Error(`cannot reshape ${formatShape(this.shape)} to ${formatShape(shape)}`);
    return new Tensor(this.gpu, this.storage, shape, this.dtype);
  }

  /** This tensor in `dtype` (the same tensor when it already is). */
  to(dtype: DType): Tensor {
    if (dtype === this.dtype) return this;
    const out = Tensor.empty(this.gpu, this.shape, dtype, 'cast');
    castOnGpu(this.gpu, this.buffer, this.dtype, out.buffer, dtype, this.size);
    return out;
  }

  /** Reads the values back as float32 (waits for all recorded work). */
  async read(): Promise<Float32Array> {
    const raw = await this.gpu.read(this.buffer, 0, storageBytes(this.shape, this.dtype));
    return this.dtype === 'f32' ? new Float32Array(raw, 0, this.size) : f16ArrayToF32(new Uint16Array(raw, 0, this.size));
  }

  /** Fills the tensor with a constant (tests poison outputs with NaN this way). */
  fill(value: number): void {
    if (this.dtype === 'f32') this.gpu.write(this.buffer, new Float32Array(this.size).fill(value));
    else this.gpu.write(this.buffer, new Uint16Array(this.size).fill(f32ToF16Bits(value)));
  }

  /** Releases the storage now (views included); harmless when already released. */
  release(): void {
    this.storage.release();
  }

  get released(): boolean {
    return this.storage.released;
  }

  /** The storage, for the scopes (scope.ts). */
  get [STORAGE](): Owned {
    return this.storage;
  }
}

/** Bytes a tensor occupies on the GPU: whole 4-byte words, as bindings require. */
export function storageBytes(shape: readonly number[], dtype: DType): number {
  return Math.max(4, Math.ceil((numel(shape) * bytesPerElement(dtype)) / 4) * 4);
}
