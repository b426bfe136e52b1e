// Weights by their checkpoint names. A model is built in two phases: its constructor
// declares every tensor it needs (name + shape) through a WeightScope — so the set of
// expected names is known without any weights, and tested against the real manifest —
// then load() checks the whole declaration against the source's table, reporting every
// missing, unexpected and mis-shaped tensor in one error, and streams the data to the GPU.
// Linear and conv weights are declared `quantizable`: with `quantize` they are stored 8-bit
// (Q8Tensor, docs/Q8.md), quantized on the GPU as they load; a source that holds them 8-bit
// already (a `sdxl-turbo quantize` folder) hands them over as they are.

import { excerpt, UsageError } from '../errors.js';
import type { Gpu } from '../gpu/runtime.js';
import type { TensorSource } from '../io/tensor-source.js';
import { cast, uploadAs } from '../ops/cast.js';
import { FiniteCheck } from '../ops/finite.js';
import { dequantize, Q8Tensor, quantize } from '../ops/quantize.js';
import { type DType, formatShape, Tensor } from '../tensor.js';

/** Bytes uploaded between waits for the GPU while loading weights. */
export const UPLOAD_PACE_BYTES = 256 * 2 ** 20;

export class Weight {
  private loaded: Tensor | Q8Tensor | null = null;

  constructor(
    readonly name: string,
    readonly shape: readonly number[],
    /** A Linear or conv weight: stored 8-bit when the model loads with `quantize`. */
    readonly quantizable = false,
  ) {}

  /** The GPU tensor, float or 8-bit; only after the owning registry's load(). */
  get value(): Tensor | Q8Tensor {
    if (!this.loaded) throw new Error(`weight ${this.name} used before it was loaded`);
    return this.loaded;
  }

  /** The float GPU tensor (norms, embeddings, biases: never 8-bit). */
  get tensor(): Tensor {
    const value = this.value;
    if (!(value instanceof Tensor)) throw new Error(`weight ${this.name} is 8-bit; its op must take a Q8Tensor`);
    return value;
  }

  set(tensor: Tensor | Q8Tensor): void {
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
  /** By weight name: merges applied in f32 before the cast to the compute dtype (or quantization). */
  readonly merges?: ReadonlyMap<string, WeightMerge>;
  /** Store the quantizable weights 8-bit, quantized on the GPU from the source's floats. */
  readonly quantize?: boolean;
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

  declare(name: string, shape: readonly number[], quantizable = false): Weight {
    if (this.weights.has(name)) throw new Error(`${this.component}: weight ${name} declared twice`);
    const w = new Weight(name, shape, quantizable);
    this.weights.set(name, w);
    return w;
  }

  /** Weights of `outputs` (name, shape, quantizable) built by `build` from `parts` (declared here, each in
   *  no other derivation): what the model uses in their place once loaded. */
  derive(outputs: ReadonlyArray<readonly [string, readonly number[], boolean?]>, parts: readonly Weight[], build: (parts: readonly Tensor[]) => Tensor[]): Weight[] {
    const derivation = { outputs: outputs.map(([name, shape, quantizable]) => new Weight(name, shape, quantizable)), parts, build };
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

  /** The names of the Linear and conv weights (those a Q8 source may hold 8-bit). */
  quantizable(): Set<string> {
    return new Set([...this.weights.values()].filter((w) => w.quantizable).map((w) => w.name));
  }

  /** Checks the source's table against the declaration, then uploads every tensor in `dtype`
   *  (or has the source make it on the GPU: TensorSource.create). */
  async load(gpu: Gpu, source: TensorSource, dtype: DType, options: WeightLoadOptions = {}): Promise<void> {
    const problems = checkAgainst(this.expected(), source, this.tolerated, this.quantizable());
    if (problems.length > 0) throw new UsageError(describeMismatch(this.component, source, problems));
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
    const { onProgress, paceBytes = UPLOAD_PACE_BYTES, merges, quantize: toQ8 = false } = options;
    let done = 0;
    let queued = 0;
    const pending = new Set<Weight>(); // parts uploaded by this call, their derived weight still to build
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
      // The parts of a derived weight load as floats (it is built, then quantized, from them).
      const q8 = w.quantizable && toQ8 && !this.derivedOf.has(w.name);
      let tensor: Tensor | Q8Tensor;
      if (source.entries.get(w.name)?.q8) {
        if (merge) throw new UsageError(`${label}: a LoRA targets this weight, which ${source.description} holds 8-bit; merge LoRAs into the float model, then quantize it`, { option: 'loras' });
        const { values, scales } = await source.readQ8!(w.name);
        queued += values.byteLength + scales.byteLength;
        // int8 values are always finite; an f16 scale is not when its exponent bits are all ones.
        if (scales.some((bits) => (bits & 0x7c00) === 0x7c00)) throw new UsageError(`${this.component} weights in ${source.description} are not finite: ${w.name}'s f16 scales hold NaN or ±Inf`);
        // A part of a fused weight loads as the floats it holds, in the compute dtype as the other
        // parts; the fused weight is quantized once built, as at load (a folded LayerNorm's γ
        // makes that a second rounding).
        tensor = this.derivedOf.has(w.name)
          ? uploadAs(gpu, dequantize(values, scales, w.shape), 'f32', w.shape, dtype, { label, exact: true })
          : Q8Tensor.upload(gpu, values, scales, w.shape, label);
      } else if (merge) {
        const host = await source.read(w.name);
        queued += host.data.byteLength;
        // Merged in f32, then cast once: a LoRA update is not rounded to f16 twice. (In an f32
        // run the merged weight keeps the pooled buffer the merge wrote: ≤19% size-class slack,
        // for the LoRA's weights only.)
        const base = uploadAs(gpu, host.data, host.format, w.shape, 'f32', { label });
        const merged = await merge(base);
        if (merged !== base) base.release();
        if (q8) finite.add(merged, index);
        tensor = q8 ? quantize(merged, label) : cast(merged, dtype, { label, exact: true });
        if (tensor !== merged) merged.release();
      } else if (source.create) {
        // Made on the GPU (no staging copy), paced all the same so the queue stays short.
        const made = source.create(gpu, w.name, dtype, label);
        queued += made.byteLength;
        if (q8) finite.add(made, index);
        tensor = q8 ? quantize(made, label) : made;
        if (tensor !== made) made.release();
      } else {
        const host = await source.read(w.name);
        queued += host.data.byteLength;
        // Quantized from the file's values where the device can hold them (f16 needs
        // shader-f16; bf16 widens to f32), not from a second rounding to the compute dtype.
        const from = q8 ? (host.format === 'f16' && gpu.f16 ? 'f16' : 'f32') : dtype;
        const float = uploadAs(gpu, host.data, host.format, w.shape, from, { label, exact: true });
        if (q8) finite.add(float, index);
        tensor = q8 ? quantize(float, label) : float;
        if (tensor !== float) float.release();
      }
      w.release();
      w.set(tensor);
      // A quantized weight was checked as the floats it was quantized from.
      if (tensor instanceof Tensor) finite.add(tensor, index);
      const derived = this.derivedOf.get(w.name);
      // Its last part in: build it (quantized where it is a quantizable weight) and release the
      // parts (the parts of a derived weight are uploaded together: load() takes all names,
      // reload() adds the siblings).
      if (derived && derived.parts.every((p) => pending.has(p) || p === w)) {
        const tensors = derived.build(derived.parts.map((p) => p.tensor));
        derived.outputs.forEach((o, i) => {
          const float = tensors[i]!;
          o.release();
          o.set(toQ8 && o.quantizable ? quantize(float, o.name) : float);
          if (o.value !== float) float.release();
        });
        for (const p of derived.parts) p.release(), pending.delete(p);
      } else if (derived) pending.add(w);
      // Conversions and builds release their temporaries into the pool: destroyed at once, so
      // a load holds at most one weight's transients beside the weights (what a budget plans).
      if (gpu.pool.stats.pooledBytes > 0) gpu.trimPool();
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
    for (const w of [...this.weights.values(), ...this.resident()]) w.release();
  }
}

export interface WeightProblem {
  readonly kind: 'missing' | 'wrong shape' | 'unexpected' | 'not 8-bit-able';
  /** The tensor and what is wrong with it, e.g. "conv_in.weight is (3, 4), expected (4, 3)". */
  readonly detail: string;
}

/** Every mismatch between what a model expects and what a source holds. */
export function checkAgainst(
  expected: ReadonlyMap<string, readonly number[]>,
  source: TensorSource,
  tolerated: ReadonlySet<string> = new Set(),
  /** The names that may be held 8-bit (Linear and conv weights). */
  quantizable: ReadonlySet<string> = new Set(),
): WeightProblem[] {
  const problems: WeightProblem[] = [];
  for (const [name, shape] of expected) {
    const entry = source.entries.get(name);
    if (!entry) problems.push({ kind: 'missing', detail: `${name} ${formatShape(shape)}` });
    else if (entry.shape.join() !== shape.join()) {
      problems.push({ kind: 'wrong shape', detail: `${name} is ${formatShape(entry.shape)}, expected ${formatShape(shape)}` });
    } else if (entry.q8 && !quantizable.has(name)) {
      problems.push({ kind: 'not 8-bit-able', detail: `${name} is 8-bit (I8), but only Linear and conv weights may be` });
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

  /** `quantizable`: a Linear or conv weight (see Weight). */
  get(name: string, shape: readonly number[], quantizable = false): Weight {
    return this.registry.declare(this.prefix ? `${this.prefix}.${name}` : name, shape, quantizable);
  }
}
