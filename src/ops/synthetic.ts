// The synthetic real-size weights (test/fixtures/real-size-synthetic/SPEC.md) generated on the
// GPU (kernels/synthetic.wgsl), bit for bit as src/io/synthetic.ts generates them on the CPU:
// a real-size model loads them without a CPU pass over 3.5e9 values and without an upload.

import source from '../../kernels/synthetic.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups, type Gpu } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { synthParams } from '../io/synthetic.js';
import { bytesPerElement, type DType, formatShape, numel, Tensor } from '../tensor.js';
import { WG } from './common.js';
import { alignedWindows } from './windows.js';

/** Words each invocation writes (WG apart). */
const PER = 16;

const kernel = defineKernel({
  name: 'synthetic',
  source,
  layout: uniforms(
    ['n', 'u32'],
    ['words', 'u32'],
    ['first', 'u32'],
    ['seed', 'u32'],
    ['mulHi', 'u32'],
    ['mulLo', 'u32'],
    ['mulExp', 'i32'],
    ['one', 'u32'],
  ),
  constants: { WG, PER },
});

/** A positive normal float64 as M·2^e with 2^52 ≤ M < 2^53, M split into 21 + 32 bits. */
function splitDouble(x: number): { hi: number; lo: number; exp: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const high = view.getUint32(0);
  const biased = (high >>> 20) & 0x7ff;
  if (!(x > 0) || biased === 0 || biased === 0x7ff) throw new Error(`synthetic: multiplier ${x} is not a positive normal number`);
  return { hi: (high & 0xfffff) | 0x100000, lo: view.getUint32(4), exp: biased - 1023 - 52 };
}

/**
 * Writes elements [begin, begin + out.size) of the synthetic tensor `key` of `shape` (flat
 * row-major indices) into `out`, in `out`'s dtype: f16 the spec's bits, f32 those halves widened
 * (what uploading the CPU generator's f16 data as f32 gives). Split over binding windows.
 * `exactOnly` (tests) skips the 64-bit first try, so every element takes the 96-bit path.
 */
export function fillSynthetic(out: Tensor, key: string, shape: readonly number[], begin = 0, options: { exactOnly?: boolean } = {}): void {
  const p = synthParams(key, shape);
  if (!(Number.isSafeInteger(begin) && begin >= 0 && begin + out.size <= p.numel)) {
    throw new Error(`synthetic: elements [${begin}, ${begin + out.size}) outside ${key} ${formatShape(shape)}`);
  }
  const m = splitDouble(p.mul);
  // The sum 1 ± p is formed at p's scale, 2^(exp − 31 + up to 32) ≥ 2^−95 for the 96-bit words.
  if (p.add === 1 && 31 - m.exp > 95) throw new Error(`synthetic: ${key}: multiplier ${p.mul} too small for the 96-bit sum`);
  if (out.size === 0) return;
  const f16 = out.dtype === 'f16';
  const bpe = bytesPerElement(out.dtype);
  // 256-byte aligned windows start at even elements, as the f16 pairs need.
  for (const w of alignedWindows('synthetic', out.gpu, out.size, [bpe])) {
    const words = f16 ? Math.ceil(w.count / 2) : w.count;
    out.gpu.dispatch({
      kernel,
      defines: { F16: f16, FAST: options.exactOnly !== true },
      uniforms: { n: w.count, words, first: begin + w.start, seed: p.seed, mulHi: m.hi, mulLo: m.lo, mulExp: m.exp, one: p.add },
      bindings: [{ buffer: out.buffer, offset: w.start * bpe, size: words * 4 }],
      workgroups: foldWorkgroups(Math.ceil(words / (WG * PER))),
    });
  }
}

/** The whole synthetic tensor `key` of `shape` as a new `dtype` tensor (`exact`: outside the
 *  pool, as weights are). */
export function synthetic(gpu: Gpu, key: string, shape: readonly number[], dtype: DType, options: { label?: string; exact?: boolean } = {}): Tensor {
  const out = Tensor.empty(gpu, shape, dtype, options.label ?? `synthetic ${key}`, options.exact === true);
  if (numel(shape) > 0) fillSynthetic(out, key, shape);
  return out;
}
