// NaN-poisoning for model tests: a model allocates its activations from the buffer pool, so
// the test cannot fill its outputs beforehand; it fills the pool instead.

import { sizeClass } from '../../src/gpu/buffer-pool.js';
import type { Gpu } from '../../src/gpu/runtime.js';

/** 0x7fc0 is a NaN as f16 and 0x7fc07fc0 a NaN as f32, so every element reads as NaN in either dtype. */
const NAN_WORD = 0x7fc07fc0;

/**
 * Empties the pool, then leaves `perClass` NaN-filled idle buffers in every size class up to
 * `maxBytes`: any activation a model reads before writing it (a kernel that skips part of its
 * output, a missing dispatch) turns the result NaN instead of passing on stale data.
 */
export function poisonPool(gpu: Gpu, maxBytes: number, perClass = 16): void {
  gpu.trimPool();
  for (let bytes = 256; bytes <= sizeClass(maxBytes); bytes = sizeClass(bytes) + 1) {
    const size = sizeClass(bytes);
    const nan = new Uint32Array(size / 4).fill(NAN_WORD);
    const buffers = Array.from({ length: perClass }, () => gpu.pool.acquire(size, 'poison'));
    for (const b of buffers) gpu.write(b, nan);
    for (const b of buffers) gpu.pool.release(b);
  }
}
