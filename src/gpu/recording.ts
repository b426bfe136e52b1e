// A device that runs nothing: dispatches are recorded (kernel, specialization, bindings as
// buffer ids, workgroups, uniforms), buffers are shape-only stand-ins from a BufferPool with
// the real size classes, writes are dropped and reads return zeros. The real forwards run on
// it with the adapter's limits and f16 flag, so every op makes the windowing decisions it
// would make on the device, and the pool reuses and grows exactly as it would: one dry run
// gives the memory plan, the largest buffer and binding, and the dispatch list.

import { AllocatedBytes } from './allocated.js';
import { BufferPool } from './buffer-pool.js';
import { type Defines, type Specialization, specializationKey } from './pipeline-cache.js';
import { checkDispatch, type Dispatch, type Gpu } from './runtime.js';
import { Tuning } from './tuning.js';

/** One storage binding of a recorded dispatch. */
export interface RecordedBinding {
  /** RecordingGpu.bufferId of the bound buffer. */
  readonly buffer: number;
  readonly offset: number;
  readonly size: number;
}

export interface RecordedDispatch {
  readonly kernel: string;
  readonly defines: Defines;
  readonly bindings: readonly RecordedBinding[];
  readonly workgroups: readonly [number, number, number];
  readonly uniforms: Readonly<Record<string, number>>;
}

/** The limits a RecordingGpu plays by: the adapter's, or WebGPU's defaults where not given. */
export type RecordingLimits = Partial<Pick<GPUSupportedLimits, keyof typeof DEFAULT_LIMITS>>;

/** WebGPU's default limits (what any adapter offers at least) for what ops and pools read. */
const DEFAULT_LIMITS = {
  maxBufferSize: 268435456,
  maxStorageBufferBindingSize: 134217728,
  maxComputeWorkgroupsPerDimension: 65535,
  minStorageBufferOffsetAlignment: 256,
  minUniformBufferOffsetAlignment: 256,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupSizeZ: 64,
};

/** `limits` as plain values, WebGPU's defaults where not given. Read key by key: an adapter's
 *  GPUSupportedLimits has its values as getters, not own fields, so spreading it copies nothing. */
export function withDefaults(limits: RecordingLimits): GPUSupportedLimits {
  const merged: Record<string, number> = {};
  for (const [key, fallback] of Object.entries(DEFAULT_LIMITS)) merged[key] = limits[key as keyof RecordingLimits] ?? fallback;
  return merged as unknown as GPUSupportedLimits;
}

/** A stand-in buffer: its size, label and id, no memory. */
interface ShapeOnlyBuffer {
  readonly id: number;
  readonly size: number;
  readonly label: string;
  destroy(): void;
}

export class RecordingGpu implements Gpu {
  readonly pool: BufferPool;
  readonly limits: GPUSupportedLimits;
  readonly profiler = null;
  readonly adapterName = 'recording (dry run)';
  /** No adapter: the run's choices come from the tuning it is given, not from a stored table. */
  readonly adapter = { vendor: '', architecture: '', device: 'recording', description: 'recording (dry run)' };
  readonly lost = null;
  readonly dispatches: RecordedDispatch[] = [];
  readonly allocated = new AllocatedBytes();
  /** Each pipeline the recorded dispatches use, once (by specialization key), in first-use order. */
  readonly specializations = new Map<string, Specialization>();
  /** The largest buffer created (pooled: its size class) and the largest storage binding
   *  dispatched; callers may reset them to measure a part of the run. */
  largestBuffer = 0;
  largestBinding = 0;
  private nextId = 0;
  private readonly uniformScratch = new DataView(new ArrayBuffer(256));

  constructor(
    limits: RecordingLimits = {},
    /** Whether f16 storage is available, as on the device the run is planned for. */
    readonly f16 = true,
    /** Whether subgroups are enabled, as on that device (the reductions specialize on it). */
    readonly subgroups = false,
    /** The device's tuning, so the run picks the variants the device will (default: none). */
    readonly tuning = new Tuning(),
  ) {
    this.limits = withDefaults(limits);
    this.pool = new BufferPool((size, label) => this.createBuffer(size, label), this.limits.maxBufferSize);
  }

  /** The id a recorded binding names `buffer` by. */
  bufferId(buffer: GPUBuffer): number {
    return (buffer as unknown as ShapeOnlyBuffer).id;
  }

  dispatch<K extends string>(d: Dispatch<K>): void {
    const workgroups = checkDispatch(d, this.limits);
    if (workgroups[0] * workgroups[1] * workgroups[2] === 0) return;
    d.kernel.layout.pack(d.uniforms, this.uniformScratch, 0); // the checks the real packing makes
    const bindings = d.bindings.map((b) => {
      const offset = b.offset ?? 0;
      const size = b.size ?? b.buffer.size - offset;
      this.largestBinding = Math.max(this.largestBinding, size);
      return { buffer: this.bufferId(b.buffer), offset, size };
    });
    const key = specializationKey(d.kernel, d.defines);
    if (!this.specializations.has(key)) this.specializations.set(key, { kernel: d.kernel, defines: d.defines });
    this.dispatches.push({ kernel: d.kernel.name, defines: d.defines, bindings, workgroups, uniforms: d.uniforms });
  }

  setProfiling(): boolean {
    return false;
  }

  flush(): void {}

  async compile(): Promise<number> {
    return 0;
  }

  async sync(): Promise<void> {}

  write(): void {}

  async read(_buffer: GPUBuffer, _byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    return new ArrayBuffer(byteLength);
  }

  trimPool(): void {
    this.pool.trim();
  }

  retired(): void {}

  async releaseIdleMemory(): Promise<void> {
    this.trimPool();
  }

  dispose(): void {}

  private createBuffer(size: number, label: string): GPUBuffer {
    this.largestBuffer = Math.max(this.largestBuffer, size);
    const buffer: ShapeOnlyBuffer = this.allocated.track({ id: this.nextId++, size, label, destroy: () => {} });
    return buffer as unknown as GPUBuffer;
  }
}
