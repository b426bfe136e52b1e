// Every buffer a device holds, counted from its creation to its destroy(): weights, pooled and
// replayed activations, a load's transients, staging. A memory budget bounds this, and the pool's
// figures alone do not see the exact-sized buffers (weights, the parts a fused weight is built from).

/** A buffer as far as counting goes (a GPUBuffer, or a recording's shape-only stand-in). */
interface Destroyable {
  readonly size: number;
  destroy(): void;
}

export class AllocatedBytes {
  /** Bytes of the buffers created and not destroyed. */
  live = 0;
  /** The most `live` has been since the last restart(). */
  peak = 0;

  /** Counts `buffer` until its destroy() (once, however often that is called). */
  track<B extends Destroyable>(buffer: B): B {
    this.live += buffer.size;
    this.peak = Math.max(this.peak, this.live);
    const destroy = buffer.destroy.bind(buffer);
    let destroyed = false;
    buffer.destroy = (): void => {
      if (!destroyed) this.live -= buffer.size;
      destroyed = true;
      destroy();
    };
    return buffer;
  }

  /** Starts a new peak from what is held now. */
  restart(): void {
    this.peak = this.live;
  }
}

/** A generation's progress as far as stages go. */
interface StageEvent {
  readonly stage: string;
  readonly done: number;
  readonly total: number;
}

/**
 * The most bytes `gpu` held at once over each stage of the generations whose progress goes to
 * the returned onProgress: from a stage's first event (the denoise, which sends none at 0: from
 * the trim that ends the stage before) to its last. A budget trims the pool after each stage
 * (releaseIdleMemory, wrapped here): what a stage leaves idle until then is not the next one's.
 */
export function watchStages(gpu: { readonly allocated: AllocatedBytes; releaseIdleMemory(): Promise<void> }): { readonly peaks: Map<string, number>; onProgress(e: StageEvent): void } {
  const { allocated } = gpu;
  const peaks = new Map<string, number>();
  let stagePeak = 0;
  let betweenStages = false;
  const releaseIdle = gpu.releaseIdleMemory.bind(gpu);
  gpu.releaseIdleMemory = async () => {
    if (!betweenStages) stagePeak = Math.max(stagePeak, allocated.peak);
    await releaseIdle();
    allocated.restart();
  };
  const restart = (): void => {
    stagePeak = 0;
    allocated.restart();
  };
  return {
    peaks,
    onProgress: (e) => {
      if (e.done === 0) restart();
      betweenStages = e.done === e.total;
      if (!betweenStages) return;
      peaks.set(e.stage, Math.max(peaks.get(e.stage) ?? 0, stagePeak, allocated.peak));
      restart();
    },
  };
}
