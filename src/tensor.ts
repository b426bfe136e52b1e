// Tensor: a GPU buffer with a shape and a storage dtype. Activations come from the
// runtime's buffer pool and go back to it on release() or when their scope ends (scope.ts);
// weights are exact-sized.

import { f16ArrayToF32, f32ToF16Bits } from './f16.js';
import type { BufferPool } from './gpu/buffer-pool.js';
import type { Gpu } from './gpu/runtime.js';
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
  /** The pool it came from (a replay's while one records, gpu/replay.ts), which it goes back to. */
  private readonly pool: BufferPool;

  constructor(readonly gpu: Gpu, readonly buffer: GPUBuffer, readonly pooled: boolean) {
    this.pool = gpu.pool;
    // An activation belongs to the innermost scope, if any; a weight to its registry.
    if (pooled) adopt(this);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.pooled) this.pool.release(this.buffer);
    else {
      // Recorded dispatches may still bind it: submit them before destroying the buffer.
      this.gpu.flush();
      this.buffer.destroy();
    }
    this.gpu.retired(this.buffer);
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

  /** An uninitialized tensor from the pool, or `exact`: allocated outside it (weights). */
  static empty(gpu: Gpu, shape: readonly number[], dtype: DType, label = 'activation', exact = false): Tensor {
    const bytes = storageBytes(shape, dtype);
    const buffer = exact ? gpu.pool.allocateExact(bytes, label) : gpu.pool.acquire(bytes, label);
    return new Tensor(gpu, new Storage(gpu, buffer, !exact), shape, dtype);
  }

  /**
   * Uploads host data already in the tensor's format (`f16` data are raw 16-bit patterns);
   * `exact` allocates outside the pool (weights). Data in another format (bf16 weights, f32
   * values for an f16 tensor) is converted on the GPU by uploadAs in src/ops/cast.ts.
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
    if (format !== dtype) throw new Error(`${label}: ${format} data for a ${dtype} tensor: convert it with uploadAs (src/ops/cast.ts)`);
    const t = Tensor.empty(gpu, shape, dtype, label, options.exact === true);
    gpu.write(t.buffer, data);
    return t;
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
