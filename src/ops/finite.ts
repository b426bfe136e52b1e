// Non-finite values (NaN, ±Inf) counted on the GPU (kernels/finite.wgsl): countNonFinite adds a
// tensor's count to a slot of a u32 buffer; FiniteCheck batches it over many tensors (a network's
// weights) with one buffer and one readback for them all.

import source from '../../kernels/finite.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import type { Gpu } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, type Tensor } from '../tensor.js';
import { grid, WG } from './common.js';
import { alignedWindows } from './windows.js';

/** Words each invocation reads (the kernel's PER): fewer, larger workgroups. */
const PER = 16;

const kernel = defineKernel({ name: 'finite', source, layout: uniforms(['n', 'u32'], ['words', 'u32'], ['slot', 'u32']), constants: { WG, PER } });

/** Adds the count of `x`'s values that are NaN or ±Inf to the u32 at index `slot` of `counts`. */
export function countNonFinite(x: Tensor, counts: GPUBuffer, slot: number): void {
  if (!Number.isInteger(slot) || slot < 0 || 4 * (slot + 1) > counts.size) throw new Error(`finite: slot ${slot} outside a ${counts.size}-byte counts buffer`);
  const bytes = bytesPerElement(x.dtype);
  // Windows start 256-byte aligned, so at even elements: f16 pairs never straddle two.
  for (const w of alignedWindows('finite', x.gpu, x.size, [bytes])) {
    const words = Math.ceil((w.count * bytes) / 4);
    x.gpu.dispatch({
      kernel,
      defines: { HALF: x.dtype === 'f16' },
      uniforms: { n: w.count, words, slot },
      bindings: [{ buffer: x.buffer, offset: w.start * bytes, size: 4 * words }, { buffer: counts }],
      workgroups: grid(Math.ceil(words / PER)),
    });
  }
}

/** A tensor FiniteCheck found values in that are NaN or ±Inf. */
export interface NonFinite {
  /** The index `add` was given for it. */
  readonly index: number;
  readonly count: number;
}

/** Counts the non-finite values of up to `capacity` tensors, read back once by `failures()`. */
export class FiniteCheck {
  private readonly counts: GPUBuffer;

  constructor(private readonly gpu: Gpu, private readonly capacity: number) {
    // A new buffer is zeroed (WebGPU initializes every buffer it creates).
    this.counts = gpu.pool.allocateExact(4 * Math.max(1, capacity), 'non-finite counts');
  }

  /** Counts `x`'s non-finite values as tensor `index` (< capacity). */
  add(x: Tensor, index: number): void {
    if (index >= this.capacity) throw new Error(`finite: tensor ${index} beyond a check of ${this.capacity}`);
    countNonFinite(x, this.counts, index);
  }

  /** Every tensor with a non-finite value, by index. */
  async failures(): Promise<NonFinite[]> {
    const counts = new Uint32Array(await this.gpu.read(this.counts, 0, 4 * Math.max(1, this.capacity)));
    const found: NonFinite[] = [];
    counts.forEach((count, index) => count > 0 && found.push({ index, count }));
    return found;
  }

  /** Frees the counts (after recorded work that adds to them is submitted); idempotent. */
  release(): void {
    this.gpu.flush();
    this.counts.destroy();
  }
}
