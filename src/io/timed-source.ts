// A TensorSource wrapper that measures the time spent reading (for the synthetic weights:
// generating them), so tools can tell reading from uploading.

import type { HostTensor, TensorSource } from './tensor-source.js';

export class TimedSource implements TensorSource {
  /** Seconds spent in the wrapped source's read(). */
  readSeconds = 0;

  constructor(private readonly inner: TensorSource) {}

  get description(): string {
    return this.inner.description;
  }

  get entries(): TensorSource['entries'] {
    return this.inner.entries;
  }

  async read(name: string): Promise<HostTensor> {
    const start = performance.now();
    const host = await this.inner.read(name);
    this.readSeconds += (performance.now() - start) / 1000;
    return host;
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}
