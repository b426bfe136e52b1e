// Activation buffers come from a pool of size classes so the denoising loop allocates
// nothing after its first step. Classes grow by 2^(1/4) (≤19% slack); weights, which
// are long-lived and exact-sized, bypass the pool (see `allocateExact`). The pool does not
// create buffers itself: the WebGPU runtime hands it device.createBuffer, the recording GPU
// shape-only stand-ins, so a dry run reuses and grows the pool exactly as a real run does.

export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2); // four classes per octave
  return Math.ceil(bytes / step) * step;
}

/** Makes a buffer of `size` bytes (already a multiple of 16 within the device's limit). */
export type CreateBuffer = (size: number, label: string) => GPUBuffer;

/** A buffer over the device's maxBufferSize was asked for. */
export class BufferTooLargeError extends Error {
  constructor(readonly label: string, readonly bytes: number, readonly limit: number) {
    super(`${label}: a ${bytes}-byte buffer exceeds this adapter's maxBufferSize (${limit})`);
  }
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
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
    const reused = this.free.get(size)?.pop();
    const buffer = reused ?? this.allocateExact(size, label);
    if (reused) this.pooledBytes -= size;
    else this.misses += 1;
    this.liveBytes += size;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.liveBytes);
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes + this.pooledBytes);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const list = this.free.get(buffer.size) ?? [];
    list.push(buffer);
    this.free.set(buffer.size, list);
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
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.pooledBytes = 0;
  }

  get stats(): { liveBytes: number; pooledBytes: number; peakBytes: number; misses: number } {
    return { liveBytes: this.liveBytes, pooledBytes: this.pooledBytes, peakBytes: this.peakBytes, misses: this.misses };
  }
}
