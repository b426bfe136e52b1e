// A source of named tensors: a safetensors file (Node file, Blob, URL), several shards,
// or the synthetic real-size generator. Loading asks for the table first (so a wrong
// checkpoint is reported before any byte is read), then reads tensor by tensor.

import type { Gpu } from '../gpu/runtime.js';
import type { DType, HostFormat, Tensor } from '../tensor.js';

export interface TensorEntry {
  readonly name: string;
  readonly format: HostFormat;
  readonly shape: readonly number[];
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
  close?(): Promise<void>;
}

/** The bytes read() gives for `entry` (the unit of the load progress). */
export function entryBytes(entry: TensorEntry): number {
  return entry.shape.reduce((a, d) => a * d, 1) * (entry.format === 'f32' ? 4 : 2);
}
