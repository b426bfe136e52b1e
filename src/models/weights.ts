// Weights by their checkpoint names. A model is built in two phases: its constructor
// declares every tensor it needs (name + shape) through a WeightScope — so the set of
// expected names is known without any weights, and tested against the real manifest —
// then load() checks the whole declaration against the source's table, reporting every
// missing, unexpected and mis-shaped tensor in one error, and streams the data to the GPU.

import { UsageError } from '../errors.js';
import type { Gpu } from '../gpu/runtime.js';
import type { TensorSource } from '../io/tensor-source.js';
import { cast, uploadAs } from '../ops/cast.js';
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
 * Weights made on the GPU from declared ones, not checkpoint tensors (e.g. to_q|to_k|to_v
 * concatenated, so q, k and v are one matmul). Built once all their parts are loaded (after
 * their LoRA merges), which are released then; reloading any part reloads its siblings and
 * builds them again. `build` returns exact-allocated tensors (outside the pool), one per output.
 */
interface Derivation {
  readonly outputs: readonly Weight[];
  readonly parts: readonly Weight[];
  readonly build: (parts: readonly Tensor[]) => Tensor[];
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
  /** Weights built from declared ones, by the name of each part (a part belongs to one). */
  private readonly derivedOf = new Map<string, Derivation>();

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

  /** Weights of `outputs` (name: shape) built by `build` from `parts` (declared here, each in
   *  no other derivation): what the model uses in their place once loaded. */
  derive(outputs: ReadonlyArray<readonly [string, readonly number[]]>, parts: readonly Weight[], build: (parts: readonly Tensor[]) => Tensor[]): Weight[] {
    const derivation = { outputs: outputs.map(([name, shape]) => new Weight(name, shape)), parts, build };
    for (const p of parts) {
      if (this.weights.get(p.name) !== p) throw new Error(`${this.component}: ${outputs[0]![0]} derives from ${p.name}, which is not declared here`);
      if (this.derivedOf.has(p.name)) throw new Error(`${this.component}: ${p.name} is part of two derived weights`);
      this.derivedOf.set(p.name, derivation);
    }
    return derivation.outputs;
  }

  /** What stays on the GPU once loaded: each declared weight not part of a derived one, and
   *  the derived ones. */
  resident(): Weight[] {
    const derived = new Set([...this.derivedOf.values()].flatMap((d) => d.outputs));
    return [...[...this.weights.values()].filter((w) => !this.derivedOf.has(w.name)), ...derived];
  }

  /** name → shape of everything the model needs. */
  expected(): Map<string, readonly number[]> {
    return new Map([...this.weights].map(([n, w]) => [n, w.shape]));
  }

  /** Checks the source's table against the declaration, then uploads every tensor in `dtype`
   *  (or has the source make it on the GPU: TensorSource.create). */
  async load(gpu: Gpu, source: TensorSource, dtype: DType, options: WeightLoadOptions = {}): Promise<void> {
    const problems = checkAgainst(this.expected(), source, this.tolerated);
    if (problems.length > 0) {
      const lines = problems.map((p) => `${p.kind}: ${p.detail}`);
      throw new UsageError(`${this.component} weights in ${source.description} do not match the model:\n  ${lines.join('\n  ')}`);
    }
    await this.upload(gpu, source, dtype, [...this.weights.keys()], options);
  }

  /** Uploads `names` again (their merges changed), in place of their current tensors; the
   *  other parts of a derived weight among them too, and builds it again. */
  async reload(gpu: Gpu, source: TensorSource, dtype: DType, names: Iterable<string>, options: WeightLoadOptions = {}): Promise<void> {
    const all = new Set<string>();
    for (const name of names) {
      const derived = this.derivedOf.get(name);
      for (const n of derived ? derived.parts.map((p) => p.name) : [name]) all.add(n);
    }
    await this.upload(gpu, source, dtype, [...all], options);
  }

  private async upload(gpu: Gpu, source: TensorSource, dtype: DType, names: readonly string[], options: WeightLoadOptions): Promise<void> {
    const { onProgress, paceBytes = UPLOAD_PACE_BYTES, merges } = options;
    let done = 0;
    let queued = 0;
    const pending = new Set<Weight>(); // parts uploaded by this call, their derived weight still to build
    for (const name of names) {
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
      const derived = this.derivedOf.get(w.name);
      // Its last part in: build it and release the parts (the parts of a derived weight are
      // uploaded together: load() takes all names, reload() adds the siblings).
      if (derived && derived.parts.every((p) => pending.has(p) || p === w)) {
        const tensors = derived.build(derived.parts.map((p) => p.tensor));
        derived.outputs.forEach((o, i) => (o.release(), o.set(tensors[i]!)));
        for (const p of derived.parts) p.release(), pending.delete(p);
      } else if (derived) pending.add(w);
      onProgress?.(++done, names.length);
    }
  }

  release(): void {
    for (const w of [...this.weights.values(), ...this.resident()]) w.release();
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
