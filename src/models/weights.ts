// Weights by their checkpoint names. A model is built in two phases: its constructor
// declares every tensor it needs (name + shape) through a WeightScope — so the set of
// expected names is known without any weights, and tested against the real manifest —
// then load() checks the whole declaration against the source's table, reporting every
// missing, unexpected and mis-shaped tensor in one error, and streams the data to the GPU.

import { excerpt, UsageError } from '../errors.js';
import type { Gpu } from '../gpu/runtime.js';
import type { TensorSource } from '../io/tensor-source.js';
import { cast, uploadAs } from '../ops/cast.js';
import { FiniteCheck } from '../ops/finite.js';
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

/**
 * Changes a weight before it takes the compute dtype (a LoRA merge): given the weight in f32,
 * returns the changed f32 tensor (the caller releases the one it gave).
 */
export type WeightMerge = (weight: Tensor) => Promise<Tensor>;

export interface WeightLoadOptions {
  readonly onProgress?: (done: number, total: number) => void;
  /** Bytes uploaded between waits for the GPU (default UPLOAD_PACE_BYTES). */
  readonly paceBytes?: number;
  /** By weight name: merges applied in f32 before the cast to the compute dtype. */
  readonly merges?: ReadonlyMap<string, WeightMerge>;
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
  async load(gpu: Gpu, source: TensorSource, dtype: DType, options: WeightLoadOptions = {}): Promise<void> {
    const problems = checkAgainst(this.expected(), source, this.tolerated);
    if (problems.length > 0) throw new UsageError(describeMismatch(this.component, source, problems));
    await this.upload(gpu, source, dtype, [...this.weights.keys()], options);
  }

  /** Uploads `names` again (their merges changed), in place of their current tensors. */
  async reload(gpu: Gpu, source: TensorSource, dtype: DType, names: Iterable<string>, options: WeightLoadOptions = {}): Promise<void> {
    await this.upload(gpu, source, dtype, [...names], options);
  }

  private async upload(gpu: Gpu, source: TensorSource, dtype: DType, names: readonly string[], options: WeightLoadOptions): Promise<void> {
    // Every tensor is checked for NaN and ±Inf where it lands, as it will compute (after any
    // conversion or merge): one counts buffer and one readback for the whole network.
    const finite = new FiniteCheck(gpu, names.length);
    try {
      await this.uploadChecked(gpu, source, dtype, names, options, finite);
    } finally {
      finite.release();
    }
  }

  private async uploadChecked(gpu: Gpu, source: TensorSource, dtype: DType, names: readonly string[], options: WeightLoadOptions, finite: FiniteCheck): Promise<void> {
    const { onProgress, paceBytes = UPLOAD_PACE_BYTES, merges } = options;
    let done = 0;
    let queued = 0;
    for (const [index, name] of names.entries()) {
      const w = this.weights.get(name);
      if (!w) throw new Error(`${this.component}: no weight ${name} declared`);
      // Each upload sits in a staging copy until the queue has run it: wait every
      // paceBytes so gigabytes of weights are not held twice.
      if (queued >= paceBytes) {
        await gpu.sync();
        queued = 0;
      }
      const label = `${this.component}.${w.name}`;
      const merge = merges?.get(w.name);
      let tensor: Tensor;
      if (merge) {
        const host = await source.read(w.name);
        queued += host.data.byteLength;
        // Merged in f32, then cast once: a LoRA update is not rounded to f16 twice. (In an f32
        // run the merged weight keeps the pooled buffer the merge wrote: ≤19% size-class slack,
        // for the LoRA's weights only.)
        const base = uploadAs(gpu, host.data, host.format, w.shape, 'f32', { label });
        const merged = await merge(base);
        if (merged !== base) base.release();
        tensor = cast(merged, dtype, { label, exact: true });
        if (tensor !== merged) merged.release();
      } else if (source.create) {
        // Made on the GPU (no staging copy), paced all the same so the queue stays short.
        tensor = source.create(gpu, w.name, dtype, label);
        queued += tensor.byteLength;
      } else {
        const host = await source.read(w.name);
        queued += host.data.byteLength;
        tensor = uploadAs(gpu, host.data, host.format, w.shape, dtype, { label, exact: true });
      }
      w.release();
      w.set(tensor);
      finite.add(tensor, index);
      onProgress?.(++done, names.length);
    }
    const failures = await finite.failures();
    if (failures.length === 0) return;
    const described = failures.map(({ index, count }) => {
      const { name, shape } = this.weights.get(names[index]!)!;
      const converted = source.entries.get(name)?.format === 'f32' && dtype === 'f16' ? ' once converted to f16 (finite up to ±65504)' : '';
      return `${name} ${formatShape(shape)} has ${count} NaN or ±Inf value${count === 1 ? '' : 's'}${converted}`;
    });
    const more = described.length > 3 ? `, and ${described.length - 3} more tensors` : '';
    throw new UsageError(`${this.component} weights in ${source.description} are not finite: ${described.slice(0, 3).join('; ')}${more}`);
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

/**
 * One line for a source that does not match a model: per kind of problem, how many and the first
 * three — "unet weights in F do not match the model: 840 missing (a (64), b (64, 16), c (8), …),
 * 248 unexpected (d, e, f, …)" (a wrong checkpoint has hundreds, a hostile one 300k). Linear.
 */
export function describeMismatch(component: string, source: TensorSource, problems: readonly WeightProblem[]): string {
  const byKind = new Map<string, string[]>();
  for (const { kind, detail } of problems) {
    const items = byKind.get(kind) ?? [];
    if (items.length === 0) byKind.set(kind, items);
    items.push(detail);
  }
  const parts = [...byKind].map(([kind, items]) => `${items.length} ${kind} (${items.slice(0, 3).map((d) => excerpt(d, 120)).join(', ')}${items.length > 3 ? ', …' : ''})`);
  return `${component} weights in ${source.description} do not match the model: ${parts.join(', ')}`;
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
