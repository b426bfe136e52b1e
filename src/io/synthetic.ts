// The synthetic real-size SDXL-Turbo weights of test/fixtures/real-size-synthetic/SPEC.md,
// generated bit for bit on demand: every tensor of the real layout, values from a hash of
// (key, flat index), rounded once from float64 to float16. A TensorSource, so the real-size
// models load them like a checkpoint without 7 GB of files; a tensor is generated only when
// read. The layout comes from sdxl-turbo-layout/weights-manifest.json, which the caller reads
// and passes in (kept out of the browser bundle).

import type { HostTensor, TensorEntry, TensorSource } from './tensor-source.js';

/** FNV-1a (32-bit) over the UTF-8 bytes of a state-dict key. */
export function fnv1a32(name: string): number {
  let h = 2166136261;
  for (const b of new TextEncoder().encode(name)) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h;
}

/** PCG-RXS-M-XS 32-bit hash (SPEC.md §2). */
export function pcgHash(x: number): number {
  const state = (Math.imul(x, 747796405) + 2891336453) >>> 0;
  const word = Math.imul((state >>> ((state >>> 28) + 4)) ^ state, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

export type SynthKind = 'embedding' | 'weight' | 'norm_weight' | 'bias';

export function kindOf(key: string, shape: readonly number[]): SynthKind {
  if (shape.length >= 2) return /token_embedding|position_embedding/.test(key) ? 'embedding' : 'weight';
  if (shape.length === 1) return /norm[^.]*\.weight$/.test(key) ? 'norm_weight' : 'bias';
  throw new Error(`synthetic weights: no rule for ${key} of shape [${shape.join(', ')}] (0-D)`);
}

// The high word of a float64 (sign, exponent, top of the mantissa); WebGPU hosts are little-endian.
const f64 = new Float64Array(1);
const words = new Uint32Array(f64.buffer);
/** 2^(10 − e) for unbiased exponents e = −14 … 15: scales a normal half's mantissa to [1024, 2048). */
const MANTISSA_SCALE = Array.from({ length: 30 }, (_, i) => 2 ** (10 - (i - 14)));

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f; // exact: x < 2^11
  return d > 0.5 || (d === 0.5 && (f & 1) === 1) ? f + 1 : f;
}

/**
 * IEEE binary64 → binary16 bits, rounded once (to nearest, ties to even), with subnormals and
 * signed zero: NumPy's `astype(np.float16)`, ES2025's Math.f16round. Not via float32, whose
 * double rounding changes ≈ 6e-5 of the synthetic weights.
 */
export function f64ToF16Bits(v: number): number {
  f64[0] = v;
  const hi = words[1]!;
  const sign = (hi >>> 16) & 0x8000;
  const e = ((hi >>> 20) & 0x7ff) - 1023;
  if (e === 1024) return sign | (v === v ? 0x7c00 : 0x7e00); // ±inf, NaN
  const a = Math.abs(v);
  // Below 2^-14 the half is subnormal: count units of 2^-24 (a carry to 1024 is the smallest normal).
  if (e < -14) return sign | roundHalfEven(a * 16777216);
  if (e > 15) return sign | 0x7c00;
  const m = roundHalfEven(a * MANTISSA_SCALE[e + 14]!); // 1024 … 2048, both scalings exact
  // m = 2048 carries into the exponent; from e = 15 that gives 0x7c00, the overflow to infinity.
  return sign | (((e + 15) << 10) + m - 1024);
}

/**
 * What a whole tensor's elements share (SPEC.md §2): the seed of its key and the float64
 * value add + mul·u of its kind. `0 + x` is x exactly (u is never −0), and the norm weight is
 * 1 + 0.1·u with the product rounded first, as the spec orders it.
 */
export interface SynthParams {
  readonly kind: SynthKind;
  readonly numel: number;
  /** pcgHash(fnv1a32(key)). */
  readonly seed: number;
  readonly mul: number;
  /** 1 for norm weights, else 0. */
  readonly add: 0 | 1;
}

export function synthParams(key: string, shape: readonly number[]): SynthParams {
  const kind = kindOf(key, shape);
  const mul = kind === 'embedding' ? 0.5 : kind === 'weight' ? Math.sqrt(3 / shape.slice(1).reduce((a, d) => a * d, 1)) : kind === 'norm_weight' ? 0.1 : 0.05;
  return { kind, numel: shape.reduce((a, d) => a * d, 1), seed: pcgHash(fnv1a32(key)), mul, add: kind === 'norm_weight' ? 1 : 0 };
}

/** The float16 bits of flat element `i` of the tensor `p` describes: the one element function
 *  of the CPU generator and of the GPU kernel's reference. */
export function synthElement(p: SynthParams, i: number): number {
  const u = (pcgHash((i + p.seed) >>> 0) / 4294967296) * 2 - 1;
  return f64ToF16Bits(p.add + p.mul * u);
}

/** Float16 bits of elements [begin, end) of tensor `key` (flat row-major indices). */
export function synthF16Bits(key: string, shape: readonly number[], begin = 0, end = shape.reduce((a, d) => a * d, 1)): Uint16Array {
  const p = synthParams(key, shape);
  if (!(Number.isSafeInteger(begin) && Number.isSafeInteger(end) && begin >= 0 && begin <= end && end <= p.numel)) {
    throw new Error(`synthetic weights: range [${begin}, ${end}) outside ${key} (${p.numel} elements)`);
  }
  const out = new Uint16Array(end - begin);
  for (let i = begin; i < end; i++) out[i - begin] = synthElement(p, i);
  return out;
}

/** The real-size layout of one component: weights-manifest.json's `components[c].tensors`. */
function manifestTensors(manifest: unknown, component: string): Array<{ name: string; shape: number[] }> {
  const tensors = (manifest as { components?: Record<string, { tensors?: unknown }> } | null)?.components?.[component]?.tensors;
  if (!Array.isArray(tensors)) throw new Error(`weights manifest: no tensor list for component ${component}`);
  for (const t of tensors as Array<{ name?: unknown; shape?: unknown }>) {
    if (typeof t?.name !== 'string' || !Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
      throw new Error(`weights manifest: ${component}: bad tensor entry ${JSON.stringify(t)}`);
    }
  }
  return tensors as Array<{ name: string; shape: number[] }>;
}

export class SyntheticSource implements TensorSource {
  readonly description: string;
  readonly entries: ReadonlyMap<string, TensorEntry>;

  private constructor(component: string, tensors: ReadonlyArray<{ name: string; shape: number[] }>) {
    this.description = `synthetic ${component} weights (real-size-synthetic/SPEC.md)`;
    this.entries = new Map(tensors.map((t) => [t.name, { name: t.name, format: 'f16', shape: t.shape }]));
  }

  /** `manifest`: the parsed sdxl-turbo-layout/weights-manifest.json; `component`: e.g. 'unet'. */
  static fromManifest(manifest: unknown, component: string): SyntheticSource {
    return new SyntheticSource(component, manifestTensors(manifest, component));
  }

  async read(name: string): Promise<HostTensor> {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`${this.description}: no tensor named ${name}`);
    return { format: 'f16', data: synthF16Bits(name, entry.shape) };
  }
}
