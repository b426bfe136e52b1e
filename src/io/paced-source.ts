// A TensorSource wrapper that lets the GPU catch up while weights stream in. Each upload is
// copied into a staging allocation that the implementation frees only once the queue has run
// it and it next processes events, and nothing does between uploads: loading gigabytes of
// weights without waiting would hold them twice. It also measures the time spent reading (for
// the synthetic weights: generating them).

import type { HostTensor, TensorSource } from './tensor-source.js';

/** Bytes read between waits: bounds the staging memory queued behind the reads. */
export const PACE_BYTES = 256 * 2 ** 20;

export class PacedSource implements TensorSource {
  /** Seconds spent in the wrapped source's read(). */
  readSeconds = 0;
  private pending = 0;

  constructor(
    private readonly inner: TensorSource,
    /** The Gpu the data is uploaded to (only its sync() is used). */
    private readonly gpu: { sync(): Promise<void> },
    private readonly everyBytes = PACE_BYTES,
  ) {}

  get description(): string {
    return this.inner.description;
  }

  get entries(): TensorSource['entries'] {
    return this.inner.entries;
  }

  async read(name: string): Promise<HostTensor> {
    if (this.pending >= this.everyBytes) {
      await this.gpu.sync();
      this.pending = 0;
    }
    const start = performance.now();
    const host = await this.inner.read(name);
    this.readSeconds += (performance.now() - start) / 1000;
    this.pending += host.data.byteLength;
    return host;
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}
