// A source of named tensors: a safetensors file (Node file, Blob, URL), several shards,
// or the synthetic real-size generator. Loading asks for the table first (so a wrong
// checkpoint is reported before any byte is read), then reads tensor by tensor.

import type { Gpu } from '../gpu/runtime.js';
import type { DType, HostFormat, Tensor } from '../tensor.js';

export interface TensorEntry {
  readonly name: string;
  /** The data's format; of an 8-bit entry, its scales'. */
  readonly format: HostFormat;
  readonly shape: readonly number[];
  /** Held 8-bit (docs/Q8.md): I8 values and f16 scales, read with readQ8, not read. */
  readonly q8?: boolean;
}

export interface HostTensor {
  readonly format: HostFormat;
  /** Float32Array for f32; raw 16-bit patterns for f16 / bf16. */
  readonly data: Float32Array | Uint16Array;
}

export interface TensorSource {
  /** Where the tensors come from, for error messages (a file path, a URL, …). */
  readonly description: string;
  readonly entries: ReadonlyMap<string, TensorEntry>;
  /** Reads one tensor; the caller uploads it and drops the host copy. */
  read(name: string): Promise<HostTensor>;
  /**
   * Optional: makes tensor `name` on the GPU as a `dtype` tensor allocated outside the pool
   * (as weights are), the same values read() would give uploaded with uploadAs, without a host
   * copy or an upload (the synthetic weights: generated where they land). WeightRegistry.load
   * uses it instead of read() when present.
   */
  create?(gpu: Gpu, name: string, dtype: DType, label: string): Tensor;
  /** An 8-bit entry's int8 values (row-major) and f16 scale bits (rows, ceil(K / 32)). */
  readQ8?(name: string): Promise<{ values: Int8Array; scales: Uint16Array }>;
  close?(): Promise<void>;
}

/** The bytes read() gives for `entry` (the unit of the load progress). */
export function entryBytes(entry: TensorEntry): number {
  const n = entry.shape.reduce((a, d) => a * d, 1);
  if (entry.q8) return n + 2 * entry.shape[0]! * Math.ceil(n / entry.shape[0]! / 32);
  return n * (entry.format === 'f32' ? 4 : 2);
}
