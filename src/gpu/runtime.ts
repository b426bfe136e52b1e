// The GPU runtime: `Gpu` is what ops and models see of a device; WebGpuRuntime is the real
// one (one device, its pipeline cache and buffer pool, and command batching), RecordingGpu
// (recording.ts) the dry run's.
// Dispatches are recorded into one open compute pass and submitted together on flush();
// WebGPU orders the dispatches of a pass, so a buffer released mid-batch can be handed
// to a later dispatch of the same batch safely. Uploads flush first, because
// queue.writeBuffer runs ahead of commands that are still being recorded.

import { GpuError } from '../errors.js';
import { AllocatedBytes } from './allocated.js';
import { BufferPool } from './buffer-pool.js';
import { type Defines, type KernelSource, PipelineCache, type Specialization } from './pipeline-cache.js';
import { Profiler } from './profiler.js';
import { Tuning } from './tuning.js';
import { isSoftwareAdapter } from './software-adapter.js';
import { type AdapterIdentity, adapterIdentity } from './tuning-table.js';
import type { SubgroupMatrixState } from '../ops/matmul-subgroup-matrix.js';

export interface GpuOptions {
  /** Record per-kernel GPU time (needs the adapter's timestamp-query feature). */
  readonly profile?: boolean;
  /** Use shader-f16 when the adapter offers it (default true). */
  readonly allowF16?: boolean;
  /** Use subgroup operations in reductions when the adapter offers `subgroups` (default true). */
  readonly allowSubgroups?: boolean;
  /** Caps the storage binding size ops plan with (`limits.maxStorageBufferBindingSize` becomes
   *  the smaller of this and the adapter's), so tests run split paths on small tensors. */
  readonly maxStorageBindingBytes?: number;
  /** Try the subgroup-matrix (tensor-core) matmul: `chromium-experimental-subgroup-matrix` is
   *  requested when offered, and a config is used only after its start-up self-check against
   *  the tiled kernel passed (Gpu.subgroupMatrix says what happened). Default false. */
  readonly subgroupMatrix?: boolean;
}

/** The feature of the subgroup-matrix matmul (src/ops/matmul-subgroup-matrix.ts). */
export const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix' as GPUFeatureName;

export interface Dispatch<K extends string> {
  /** The kernel with its uniform layout (defineKernel): uniforms are typed by its keys. */
  readonly kernel: KernelSource<K>;
  readonly defines: Defines;
  readonly uniforms: Record<NoInfer<K>, number>;
  /** Storage bindings 1..n in the kernel's binding order (binding 0 is `params`). */
  readonly bindings: readonly GPUBufferBinding[];
  readonly workgroups: readonly [number, number?, number?];
}

export const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment is at most 256
/** The runtime's uniform ring: held for the device's life, beside whatever a run holds. */
export const UNIFORM_RING_BYTES = 256 * 1024;

export class NoAdapterError extends GpuError {
  override readonly name: string = 'NoAdapterError';
}

/** A device as ops, models and the pipeline use it. */
export interface Gpu {
  readonly pool: BufferPool;
  readonly limits: GPUSupportedLimits;
  /** shader-f16 is enabled on the device: f16 storage is available. */
  readonly f16: boolean;
  /** The `subgroups` feature is enabled: norm and softmax reductions use subgroup operations. */
  readonly subgroups: boolean;
  /** Variant choices measured on this adapter (empty: every launcher's heuristic). */
  readonly tuning: Tuning;
  /** The subgroup-matrix matmul's checked plans (GpuOptions.subgroupMatrix); absent or without
   *  a plan for a dtype: that dtype's matmuls use the tiled kernels. */
  readonly subgroupMatrix?: SubgroupMatrixState | null;
  /** Human-readable adapter description, e.g. "llvmpipe (lavapipe) vulkan". */
  readonly adapterName: string;
  /** The adapter's GPUAdapterInfo, which a stored tuning table is measured on (tuning-table.ts). */
  readonly adapter: AdapterIdentity;
  /** Set once the device is lost (destroyed, driver reset): every later call throws it. */
  readonly lost: GpuError | null;
  /** Per-kernel timestamps while profiling (see setProfiling); null otherwise. */
  readonly profiler: Profiler | null;
  /** Every buffer this device holds, in bytes, and the most at once (what a budget bounds). */
  readonly allocated: AllocatedBytes;
  /** Switches per-kernel timing on (a fresh profiler) or off; returns whether it is on. */
  setProfiling(enabled: boolean): boolean;
  dispatch<K extends string>(d: Dispatch<K>): void;
  /** Compiles, in parallel and asynchronously, every pipeline of `specializations` not compiled
   *  yet, so dispatches that use them do not stall on compilation; resolves with the count. */
  compile(specializations: Iterable<Specialization>, onCompiled?: (done: number, total: number) => void): Promise<number>;
  /** Submits everything recorded so far. */
  flush(): void;
  /** Flushes and waits for the GPU; throws the first error raised since the last sync. */
  sync(): Promise<void>;
  /** Copies `data` into `buffer` at `byteOffset`, after everything recorded before it. */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset?: number): void;
  /** Reads `byteLength` bytes of `buffer` (a multiple of 4) after all recorded work. */
  read(buffer: GPUBuffer, byteOffset: number, byteLength: number): Promise<ArrayBuffer>;
  /** Destroys idle pooled buffers after submitting what was recorded. */
  trimPool(): void;
  /** Destroys idle pooled buffers and waits until their memory is actually freed. */
  releaseIdleMemory(): Promise<void>;
  /** Told by a tensor when its buffer leaves it (back to its pool, or destroyed), so a
   *  recorded forward that binds the buffer is dropped (replay.ts). */
  retired(buffer: GPUBuffer): void;
  /** Releases the device. */
  dispose(): void;
}

/** What a recording (replay.ts) is told while a forward runs under WebGpuRuntime.record(). */
export interface DispatchRecorder {
  /** The pool the recorded forward's tensors come from instead of the runtime's. */
  readonly pool: BufferPool;
  /** A dispatch as the runtime encoded it; `uniforms` is a copy of its packed bytes. */
  dispatch(pipeline: GPUComputePipeline, uniforms: Uint8Array, bindings: readonly GPUBufferBinding[], workgroups: readonly [number, number, number]): void;
  /** A queue write (a copy of its bytes, already padded to 4). */
  write(buffer: GPUBuffer, data: Uint8Array, byteOffset: number): void;
  /** A read back, which a replay could not repeat. */
  readBack(): void;
}

/** The checks a dispatch must pass on any device: uniforms within a slot, workgroup counts
 *  within the per-dimension limit. Returns the counts, y and z defaulted to 1. */
export function checkDispatch<K extends string>(d: Dispatch<K>, limits: GPUSupportedLimits): [number, number, number] {
  if (d.kernel.layout.byteSize > UNIFORM_SLOT) throw new Error(`${d.kernel.name}: uniforms exceed ${UNIFORM_SLOT} bytes`);
  const [x, y = 1, z = 1] = d.workgroups;
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  for (const n of [x, y, z]) {
    if (!Number.isInteger(n) || n < 0 || n > maxDim) {
      throw new Error(`${d.kernel.name}: workgroup count ${d.workgroups.join('×')} exceeds ${maxDim} per dimension`);
    }
  }
  return [x, y, z];
}

export class WebGpuRuntime implements Gpu {
  readonly pipelines: PipelineCache;
  private readonly mainPool: BufferPool;
  profiler: Profiler | null;
  /** Whether generation replays its recorded denoising step, scheduler and UNet (replay.ts):
   *  bench:pipeline turns it off to time eager encoding. */
  replayForwards = true;
  /** Device objects created so far: a replayed forward (replay.ts) adds none. */
  readonly created = { buffers: 0, bindGroups: 0 };
  readonly allocated = new AllocatedBytes();
  private recorder: DispatchRecorder | null = null;
  private readonly retiredWatchers = new Set<(buffer: GPUBuffer) => void>();
  readonly limits: GPUSupportedLimits;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly uniformRing: GPUBuffer;
  private readonly uniformStaging = new ArrayBuffer(UNIFORM_RING_BYTES);
  private uniformUsed = 0;
  /** A WebGPU error not yet reported; thrown once, by the next call that checks. */
  private error: Error | null = null;
  lost: GpuError | null = null;
  readonly tuning: Tuning;
  /** Set by open() after the self-check (GpuOptions.subgroupMatrix); tests set emulated plans. */
  subgroupMatrix: SubgroupMatrixState | null = null;
  private disposed = false;
  /** Held to remove it on dispose: a listener left on the device keeps it (and Dawn's memory
   *  for it, a memfd and megabytes per device on lavapipe) alive after destroy(). */
  private readonly onError = (event: Event): void => {
    this.error ??= new GpuError(`WebGPU error: ${(event as GPUUncapturedErrorEvent).error.message}`);
  };

  private constructor(
    readonly device: GPUDevice,
    readonly adapterName: string,
    readonly adapter: AdapterIdentity,
    readonly f16: boolean,
    readonly subgroups: boolean,
    cpu: boolean,
    profile: boolean,
    private readonly onDispose: () => void,
    maxStorageBindingBytes = Infinity,
  ) {
    this.tuning = new Tuning(cpu);
    this.limits = capBindingLimit(device.limits, maxStorageBindingBytes);
    this.pipelines = new PipelineCache(device);
    // GPUBufferUsage is read here, not at module load: in Node it is installed by the seam.
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.mainPool = new BufferPool((size, label) => this.createBuffer({ size, usage, label }), device.limits.maxBufferSize);
    this.profiler = null;
    this.setProfiling(profile);
    this.uniformRing = this.createBuffer({
      size: UNIFORM_RING_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: 'uniform ring',
    });
    device.addEventListener('uncapturederror', this.onError);
    void device.lost.then((info) => {
      if (this.disposed) return;
      this.lost = new GpuError(`the WebGPU device was lost (${info.reason}${info.message ? `: ${info.message}` : ''})`);
      device.removeEventListener('uncapturederror', this.onError);
    });
  }

  /**
   * Opens a device on `gpu` (Node: the `webgpu` package's create(); browser: navigator.gpu),
   * asking for shader-f16, subgroups, timestamps and the adapter's largest buffer limits when offered.
   */
  static async open(gpu: GPU | undefined, options: GpuOptions = {}, onDispose: () => void = () => {}): Promise<WebGpuRuntime> {
    const adapter = await gpu?.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) {
      throw new NoAdapterError(
        'No WebGPU adapter found. On Linux without a GPU install Mesa lavapipe (scripts/install-lavapipe.sh); ' +
          'in a browser enable WebGPU (Chrome/Edge 113+, or --enable-unsafe-webgpu).',
      );
    }
    const wanted: GPUFeatureName[] = [];
    const f16 = options.allowF16 !== false && adapter.features.has('shader-f16');
    if (f16) wanted.push('shader-f16');
    const subgroups = options.allowSubgroups !== false && adapter.features.has('subgroups');
    if (subgroups) wanted.push('subgroups');
    // Requested whenever offered, so profiling can be switched on later (it costs nothing off).
    if (adapter.features.has('timestamp-query')) wanted.push('timestamp-query');
    // Needs subgroups (Dawn sizes its workgroups by subgroupMaxSize).
    const subgroupMatrix = options.subgroupMatrix === true && subgroups && adapter.features.has(SUBGROUP_MATRIX_FEATURE);
    if (subgroupMatrix) wanted.push(SUBGROUP_MATRIX_FEATURE);
    const a = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: wanted,
      requiredLimits: {
        maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
        maxBufferSize: a.maxBufferSize,
        maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
        maxComputeWorkgroupSizeY: a.maxComputeWorkgroupSizeY,
        maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
      },
    });
    const info = adapter.info;
    const name = [info?.description || info?.device, info?.vendor, info?.architecture].filter(Boolean).join(' / ');
    const runtime = new WebGpuRuntime(device, name || 'unknown adapter', adapterIdentity(info), f16, subgroups, isSoftwareAdapter(info), options.profile === true, onDispose, options.maxStorageBindingBytes);
    if (options.subgroupMatrix === true) {
      // Loaded only when asked for: the default start-up never touches the ops.
      const { enableSubgroupMatrix } = await import('../ops/subgroup-matrix-check.js');
      const why = subgroupMatrix ? null : subgroups ? `the adapter does not offer ${SUBGROUP_MATRIX_FEATURE}` : 'it needs the subgroups feature';
      runtime.subgroupMatrix = await enableSubgroupMatrix(runtime, adapter.info, why).catch((e: unknown) => {
        runtime.dispose();
        throw e;
      });
    }
    return runtime;
  }

  /** The pool tensors come from: a recording's own while one is under way. */
  get pool(): BufferPool {
    return this.recorder?.pool ?? this.mainPool;
  }

  /** device.createBuffer, counted. */
  createBuffer(descriptor: GPUBufferDescriptor): GPUBuffer {
    this.created.buffers++;
    return this.allocated.track(this.device.createBuffer(descriptor));
  }

  /** device.createBindGroup, counted. */
  createBindGroup(descriptor: GPUBindGroupDescriptor): GPUBindGroup {
    this.created.bindGroups++;
    return this.device.createBindGroup(descriptor);
  }

  /**
   * Runs `fn` (synchronous) as usual while `recorder` is told every dispatch, write and read
   * back it makes, and its tensors come from `recorder.pool`.
   */
  record<T>(recorder: DispatchRecorder, fn: () => T): T {
    if (this.recorder) throw new Error('WebGpuRuntime.record: a recording is already under way');
    this.recorder = recorder;
    try {
      return fn();
    } finally {
      this.recorder = null;
    }
  }

  /** Whether a record() is under way. */
  get recording(): boolean {
    return this.recorder !== null;
  }

  /** Calls `watcher` with every buffer a tensor gives up (see retired); returns the unsubscribe. */
  watchRetired(watcher: (buffer: GPUBuffer) => void): () => void {
    this.retiredWatchers.add(watcher);
    return () => this.retiredWatchers.delete(watcher);
  }

  retired(buffer: GPUBuffer): void {
    for (const watcher of this.retiredWatchers) watcher(buffer);
  }

  /** Switches per-kernel timing on (a fresh profiler) or off; returns whether it is on,
   *  which needs the adapter's timestamp-query feature. */
  setProfiling(enabled: boolean): boolean {
    this.flush();
    this.profiler = enabled && this.device.features.has('timestamp-query') ? new Profiler(this.device) : null;
    return this.profiler !== null;
  }

  dispatch<K extends string>(d: Dispatch<K>): void {
    this.throwIfFailed();
    const [x, y, z] = checkDispatch(d, this.limits);
    if (x * y * z === 0) return;
    if (this.uniformUsed + UNIFORM_SLOT > UNIFORM_RING_BYTES || this.profiler?.full) this.flush();

    const offset = this.uniformUsed;
    d.kernel.layout.pack(d.uniforms, new DataView(this.uniformStaging), offset);
    this.uniformUsed += UNIFORM_SLOT;

    const pipeline = this.pipelines.get(d.kernel, d.defines);
    const bindGroup = this.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      label: pipeline.label,
      entries: [
        { binding: 0, resource: { buffer: this.uniformRing, offset, size: d.kernel.layout.byteSize } },
        ...d.bindings.map((resource, i) => ({ binding: i + 1, resource })),
      ],
    });
    this.recorder?.dispatch(pipeline, new Uint8Array(this.uniformStaging, offset, d.kernel.layout.byteSize).slice(), d.bindings, [x, y, z]);
    this.encodeDispatch(pipeline, bindGroup, x, y, z);
  }

  /**
   * Appends a dispatch built beforehand (a replay's, replay.ts): no checks, no uniform packing,
   * no bind group made; a replay checks for errors once per forward (throwIfFailed).
   */
  encodeDispatch(pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, x: number, y: number, z: number): void {
    if (this.profiler?.full) this.flush();
    this.encoder ??= this.device.createCommandEncoder({ label: 'batch' });
    const timestampWrites = this.profiler?.beginDispatch(pipeline.label);
    if (timestampWrites) {
      this.endPass();
      this.pass = this.encoder.beginComputePass({ timestampWrites, label: pipeline.label });
    } else {
      this.pass ??= this.encoder.beginComputePass({ label: 'batch' });
    }
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    if (timestampWrites) this.endPass();
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  compile(specializations: Iterable<Specialization>, onCompiled?: (done: number, total: number) => void): Promise<number> {
    this.throwIfFailed();
    return this.pipelines.compile(specializations, onCompiled);
  }

  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    const afterSubmit = this.profiler?.resolve(this.encoder) ?? null;
    if (this.uniformUsed > 0) this.device.queue.writeBuffer(this.uniformRing, 0, this.uniformStaging, 0, this.uniformUsed);
    this.device.queue.submit([this.encoder.finish()]);
    afterSubmit?.();
    this.encoder = null;
    this.uniformUsed = 0;
  }

  /** Flushes and waits for the GPU; throws the first WebGPU error raised since the last sync. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfFailed();
  }

  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.flush();
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    // writeBuffer needs a multiple of 4 bytes; pad odd f16 tails with zeros.
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.device.queue.writeBuffer(buffer, byteOffset, padded);
    this.recorder?.write(buffer, padded.slice(), byteOffset);
  }

  /** Copies `byteLength` bytes (a multiple of 4) of `source` into `target`, in order with the
   *  dispatches; offsets multiples of 4. */
  copy(source: GPUBuffer, target: GPUBuffer, byteLength: number, sourceOffset = 0, targetOffset = 0): void {
    this.encoder ??= this.device.createCommandEncoder({ label: 'batch' });
    this.endPass();
    this.encoder.copyBufferToBuffer(source, sourceOffset, target, targetOffset, byteLength);
  }

  async read(buffer: GPUBuffer, byteOffset: number, byteLength: number): Promise<ArrayBuffer> {
    this.recorder?.readBack();
    const size = Math.ceil(byteLength / 4) * 4;
    const staging = this.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'readback' });
    this.encoder ??= this.device.createCommandEncoder({ label: 'batch' });
    this.endPass();
    this.encoder.copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
      this.throwIfFailed();
      return staging.getMappedRange().slice(0, byteLength);
    } finally {
      staging.destroy();
    }
  }

  /** Throws the first error raised since the last check, or the loss or disposal of the device. */
  throwIfFailed(): void {
    if (this.disposed) throw new Error('GPU runtime used after dispose()');
    if (this.lost) throw this.lost;
    const error = this.error;
    this.error = null;
    if (error) throw error;
  }

  /** Destroys idle pooled buffers after submitting what was recorded, since recorded
   *  dispatches may still bind a buffer released into the pool. */
  trimPool(): void {
    this.flush();
    this.mainPool.trim();
  }

  /**
   * Destroys idle pooled buffers and waits until the implementation has actually freed the
   * memory of every buffer destroyed so far: Dawn frees a destroyed buffer only after a
   * submission made after the destroy() completes, and loading weights need not submit
   * anything, so without this the next network would load beside the released one.
   */
  async releaseIdleMemory(): Promise<void> {
    this.trimPool();
    if (this.lost) return; // a lost device's memory is gone with it
    const probe = this.mainPool.allocateExact(4, 'memory release probe');
    await this.read(probe, 0, 4);
    probe.destroy();
  }

  /** Releases the device; in Node this also lets the process exit. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.encoder = null;
    this.pass = null;
    this.mainPool.trim();
    this.device.removeEventListener('uncapturederror', this.onError);
    this.device.destroy();
    this.onDispose();
  }
}

/** `limits` with maxStorageBufferBindingSize at most `bytes` (the object itself when it already is). */
function capBindingLimit(limits: GPUSupportedLimits, bytes: number): GPUSupportedLimits {
  if (bytes >= limits.maxStorageBufferBindingSize) return limits;
  const capped: Record<string, unknown> = {};
  for (const key in limits) capped[key] = limits[key as keyof GPUSupportedLimits];
  capped.maxStorageBufferBindingSize = bytes;
  return capped as unknown as GPUSupportedLimits;
}

function padTo4(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(bytes);
  return out;
}

/** Splits `count` workgroups into (x, y) under the per-dimension limit; kernels
 *  recover the linear index as `wg.x + wg.y * num_workgroups.x`. */
export function foldWorkgroups(count: number, maxPerDim = 65535): [number, number] {
  if (count <= maxPerDim) return [count, 1];
  const y = Math.ceil(count / maxPerDim);
  return [Math.ceil(count / y), y];
}
