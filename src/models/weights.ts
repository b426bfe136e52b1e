// Weights by their checkpoint names. A model is built in two phases: its constructor
// declares every tensor it needs (name + shape) through a WeightScope — so the set of
// expected names is known without any weights, and tested against the real manifest —
// then load() checks the whole declaration against the source's table, reporting every
// missing, unexpected and mis-shaped tensor in one error, and streams the data to the GPU.

import { UsageError } from '../errors.js';
import type { Gpu } from '../gpu/runtime.js';
import type { TensorSource } from '../io/tensor-source.js';
import { uploadAs } from '../ops/cast.js';
import { type DType, formatShape, Tensor } from '../tensor.js';

/** Bytes uploaded between waits for the GPU while loading weights. */
export const UPLOAD_PACE_BYTES = 256 * 2 ** 20;

export class Weight {
  private loaded: Tensor | null = null;

  constructor(readonly name: string, readonly shape: readonly number[]) {}

  /** The GPU tensor; only after the owning registry's load(). */
  get tensor(): Tensor {
    if (!this.loaded) throw new Error(`weight ${this.name} used before it was loaded`);
    return this.loaded;
  }

  set(tensor: Tensor): void {
    this.loaded = tensor;
  }

  release(): void {
    this.loaded?.release();
    this.loaded = null;
  }
}

export class WeightRegistry {
  readonly weights = new Map<string, Weight>();
  /** Names a checkpoint may carry that the model does not use (e.g. CLIP's position_ids buffer). */
  readonly tolerated = new Set<string>();

  constructor(
    /** The component, e.g. "unet", for messages. */
    readonly component: string,
  ) {}

  declare(name: string, shape: readonly number[]): Weight {
    if (this.weights.has(name)) throw new Error(`${this.component}: weight ${name} declared twice`);
    const w = new Weight(name, shape);
    this.weights.set(name, w);
    return w;
  }

  /** name → shape of everything the model needs. */
  expected(): Map<string, readonly number[]> {
    return new Map([...this.weights].map(([n, w]) => [n, w.shape]));
  }

  /** Checks the source's table against the declaration, then uploads every tensor in `dtype`
   *  (or has the source make it on the GPU: TensorSource.create). */
  async load(
    gpu: Gpu,
    source: TensorSource,
    dtype: DType,
    onProgress?: (done: number, total: number) => void,
    paceBytes = UPLOAD_PACE_BYTES,
  ): Promise<void> {
    const problems = checkAgainst(this.expected(), source, this.tolerated);
    if (problems.length > 0) {
      const lines = problems.map((p) => `${p.kind}: ${p.detail}`);
      throw new UsageError(`${this.component} weights in ${source.description} do not match the model:\n  ${lines.join('\n  ')}`);
    }
    let done = 0;
    let queued = 0;
    for (const w of this.weights.values()) {
      // Each upload sits in a staging copy until the queue has run it: wait every
      // paceBytes so gigabytes of weights are not held twice.
      if (queued >= paceBytes) {
        await gpu.sync();
        queued = 0;
      }
      const label = `${this.component}.${w.name}`;
      if (source.create) {
        // Made on the GPU (no staging copy), paced all the same so the queue stays short.
        w.set(source.create(gpu, w.name, dtype, label));
        queued += w.tensor.byteLength;
      } else {
        const host = await source.read(w.name);
        queued += host.data.byteLength;
        w.set(uploadAs(gpu, host.data, host.format, w.shape, dtype, { label, exact: true }));
      }
      onProgress?.(++done, this.weights.size);
    }
  }

  release(): void {
    for (const w of this.weights.values()) w.release();
  }
}

export interface WeightProblem {
  readonly kind: 'missing' | 'wrong shape' | 'unexpected';
  /** The tensor and what is wrong with it, e.g. "conv_in.weight is (3, 4), expected (4, 3)". */
  readonly detail: string;
}

/** Every mismatch between what a model expects and what a source holds. */
export function checkAgainst(
  expected: ReadonlyMap<string, readonly number[]>,
  source: TensorSource,
  tolerated: ReadonlySet<string> = new Set(),
): WeightProblem[] {
  const problems: WeightProblem[] = [];
  for (const [name, shape] of expected) {
    const entry = source.entries.get(name);
    if (!entry) problems.push({ kind: 'missing', detail: `${name} ${formatShape(shape)}` });
    else if (entry.shape.join() !== shape.join()) {
      problems.push({ kind: 'wrong shape', detail: `${name} is ${formatShape(entry.shape)}, expected ${formatShape(shape)}` });
    }
  }
  for (const name of source.entries.keys()) {
    if (!expected.has(name) && !tolerated.has(name)) problems.push({ kind: 'unexpected', detail: name });
  }
  return problems;
}

/** A prefix into the registry, mirroring the module tree: w.at('resnets', 0).get('conv1.weight', …). */
export class WeightScope {
  constructor(readonly registry: WeightRegistry, readonly prefix = '') {}

  at(...path: Array<string | number>): WeightScope {
    const joined = path.join('.');
    return new WeightScope(this.registry, this.prefix ? `${this.prefix}.${joined}` : joined);
  }

  get(name: string, shape: readonly number[]): Weight {
    return this.registry.declare(this.prefix ? `${this.prefix}.${name}` : name, shape);
  }
}
