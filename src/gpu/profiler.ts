// Per-kernel GPU time from timestamp queries: every profiled dispatch gets its own
// compute pass with begin/end timestamps. Adapters without `timestamp-query` get no
// profiler (Gpu.profiler is null); tools then time whole stages by the wall clock.

export interface KernelTiming {
  readonly kernel: string;
  readonly calls: number;
  readonly totalMs: number;
}

export class Profiler {
  private readonly totals = new Map<string, { calls: number; ns: number }>();
  private readonly pending: Promise<void>[] = [];
  private querySet: GPUQuerySet | null = null;
  private labels: string[] = [];
  readonly capacity = 2048; // dispatches per batch (two queries each)

  constructor(private readonly device: GPUDevice) {}

  /** Timestamp writes for the next dispatch, or null when the batch is full (flush first). */
  beginDispatch(label: string): GPUComputePassTimestampWrites | null {
    this.querySet ??= this.device.createQuerySet({ type: 'timestamp', count: 2 * this.capacity, label: 'profiler' });
    if (this.labels.length >= this.capacity) return null;
    const i = this.labels.length;
    this.labels.push(label);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  get full(): boolean {
    return this.labels.length >= this.capacity;
  }

  /** Called by the runtime before finishing a batch: resolves this batch's queries. */
  resolve(encoder: GPUCommandEncoder): (() => void) | null {
    if (!this.querySet || this.labels.length === 0) return null;
    const labels = this.labels;
    this.labels = [];
    const bytes = labels.length * 16;
    const resolveBuffer = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const readBuffer = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, labels.length * 2, resolveBuffer, 0);
    encoder.copyBufferToBuffer(resolveBuffer, 0, readBuffer, 0, bytes);
    return () => {
      this.pending.push(
        readBuffer.mapAsync(GPUMapMode.READ).then(() => {
          const t = new BigUint64Array(readBuffer.getMappedRange());
          labels.forEach((label, i) => this.add(label, Number(t[2 * i + 1] - t[2 * i])));
          readBuffer.destroy();
          resolveBuffer.destroy();
        }),
      );
    };
  }

  add(label: string, ns: number): void {
    const entry = this.totals.get(label) ?? { calls: 0, ns: 0 };
    entry.calls += 1;
    entry.ns += Math.max(0, ns);
    this.totals.set(label, entry);
  }

  /** Timings so far, slowest first. Await after the runtime's `sync()`. */
  async report(): Promise<KernelTiming[]> {
    await Promise.all(this.pending.splice(0));
    return [...this.totals]
      .map(([kernel, { calls, ns }]) => ({ kernel, calls, totalMs: ns / 1e6 }))
      .sort((a, b) => b.totalMs - a.totalMs);
  }

  reset(): void {
    this.totals.clear();
  }
}
