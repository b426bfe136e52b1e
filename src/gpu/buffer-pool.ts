// Activation buffers come from a pool of size classes so the denoising loop allocates
// nothing after its first step. Classes grow by 2^(1/4) (≤19% slack); weights, which
// are long-lived and exact-sized, bypass the pool (see `allocateExact`). The pool does not
// create buffers itself: the WebGPU runtime hands it device.createBuffer, the recording GPU
// shape-only stand-ins, so a dry run reuses and grows the pool exactly as a real run does.
// The pool ages by generations (endGeneration), not by time: a size class keeps as many buffers
// as the most it had in use at once during the last IDLE_GENERATIONS generations, so runs at
// many sizes do not leave every size's buffers behind, and repeating a size allocates nothing.

export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2); // four classes per octave
  return Math.ceil(bytes / step) * step;
}

/** Generations whose use of a size class keeps its idle buffers (two: alternating between two
 *  sizes reuses both sets). */
export const IDLE_GENERATIONS = 2;

/** Makes a buffer of `size` bytes (already a multiple of 16 within the device's limit). */
export type CreateBuffer = (size: number, label: string) => GPUBuffer;

/** A buffer over the device's maxBufferSize was asked for. */
export class BufferTooLargeError extends Error {
  constructor(readonly label: string, readonly bytes: number, readonly limit: number) {
    super(`${label}: a ${bytes}-byte buffer exceeds this adapter's maxBufferSize (${limit})`);
  }
}

/** The buffers of one size class. */
interface SizeClassBuffers {
  readonly free: GPUBuffer[];
  /** Buffers handed out and not released. */
  live: number;
  /** The most live at once in the current generation, then in each earlier one (newest first). */
  readonly peaks: number[];
}

export class BufferPool {
  private readonly classes = new Map<number, SizeClassBuffers>();
  private liveBytes = 0;
  private pooledBytes = 0;
  /** Largest `liveBytes + pooledBytes` ever seen: the GPU memory this pool has held. */
  peakBytes = 0;
  /** Largest `liveBytes` ever seen: the least any allocator could have needed. */
  peakLiveBytes = 0;
  /** Buffers created because no idle one of the size class was free. */
  misses = 0;

  constructor(private readonly create: CreateBuffer, private readonly maxBufferSize: number) {}

  acquire(bytes: number, label: string): GPUBuffer {
    const size = sizeClass(bytes);
    const cls = this.sizeClass(size);
    const reused = cls.free.pop();
    const buffer = reused ?? this.allocateExact(size, label);
    if (reused) this.pooledBytes -= size;
    else this.misses += 1;
    cls.live += 1;
    cls.peaks[0] = Math.max(cls.peaks[0]!, cls.live);
    this.liveBytes += size;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.liveBytes);
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes + this.pooledBytes);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const cls = this.sizeClass(buffer.size);
    cls.free.push(buffer);
    cls.live -= 1;
    this.liveBytes -= buffer.size;
    this.pooledBytes += buffer.size;
  }

  allocateExact(bytes: number, label: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (size > this.maxBufferSize) throw new BufferTooLargeError(label, size, this.maxBufferSize);
    return this.create(size, label);
  }

  /** Destroys every idle buffer (e.g. after the text encoders are released). The caller
   *  must have submitted recorded work first (Gpu.trimPool does). */
  trim(): void {
    for (const [size, cls] of this.classes) this.destroyIdle(size, cls, cls.free.length);
  }

  /**
   * Ends a generation: destroys the idle buffers of each size class beyond the most it had in
   * use at once during the last IDLE_GENERATIONS generations (this one included). The caller
   * must have waited for the GPU (no recorded or running work may still bind them).
   */
  endGeneration(): void {
    for (const [size, cls] of this.classes) {
      const keep = Math.max(...cls.peaks);
      this.destroyIdle(size, cls, Math.min(cls.free.length, cls.live + cls.free.length - keep));
      cls.peaks.unshift(cls.live);
      cls.peaks.length = Math.min(cls.peaks.length, IDLE_GENERATIONS);
    }
  }

  get stats(): { liveBytes: number; pooledBytes: number; peakBytes: number; misses: number } {
    return { liveBytes: this.liveBytes, pooledBytes: this.pooledBytes, peakBytes: this.peakBytes, misses: this.misses };
  }

  private sizeClass(size: number): SizeClassBuffers {
    let cls = this.classes.get(size);
    if (!cls) this.classes.set(size, (cls = { free: [], live: 0, peaks: [0] }));
    return cls;
  }

  private destroyIdle(size: number, cls: SizeClassBuffers, count: number): void {
    for (const b of cls.free.splice(cls.free.length - Math.max(0, count))) b.destroy();
    this.pooledBytes -= Math.max(0, count) * size;
    if (cls.live === 0 && cls.free.length === 0 && Math.max(...cls.peaks) === 0) this.classes.delete(size);
  }
}
