// Storage format conversion (kernels/cast.wgsl): f32 ↔ f16 and bf16 → f32 / f16, on the GPU,
// so weight files upload as they are and convert where they land: cast() between tensors,
// uploadAs() from host data in another format.

import source from '../../kernels/cast.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import type { Gpu } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, type DType, type HostFormat, Tensor } from '../tensor.js';
import { grid, WG } from './common.js';
import { alignedWindows } from './windows.js';

const kernel = defineKernel({ name: 'cast', source, layout: uniforms(['n', 'u32'], ['words', 'u32']), constants: { WG } });

const MODES: Partial<Record<`${HostFormat}>${HostFormat}`, number>> = { 'f32>f16': 0, 'f16>f32': 1, 'bf16>f32': 2, 'bf16>f16': 3 };

/** `x` in `dtype`: a new tensor (`exact`: outside the pool, as weights are), or `x` itself
 *  when it already is. */
export function cast(x: Tensor, dtype: DType, options: { label?: string; exact?: boolean } = {}): Tensor {
  if (dtype === x.dtype) return x;
  const out = Tensor.empty(x.gpu, x.shape, dtype, options.label ?? 'cast', options.exact === true);
  convert(x.gpu, x.buffer, x.dtype, out.buffer, dtype, x.size);
  return out;
}

/**
 * Host `data` in `format` (f32 values, or raw f16 / bf16 bits) as a new `dtype` tensor, as
 * Tensor.upload takes (`exact`: outside the pool); converted on the GPU when the formats differ.
 */
export function uploadAs(gpu: Gpu, data: Float32Array | Uint16Array, format: HostFormat, shape: readonly number[], dtype: DType, options: { label?: string; exact?: boolean } = {}): Tensor {
  if (format === dtype) return Tensor.upload(gpu, data, format, shape, dtype, options);
  const label = options.label ?? 'upload';
  // Staged as is in a tensor of its width; bf16 bits ride in an f16-typed one nothing computes on.
  const width = format === 'bf16' ? 'f16' : format;
  const staged = Tensor.upload(gpu, data, width, shape, width, { label: `${label} (staging)` });
  const out = Tensor.empty(gpu, shape, dtype, label, options.exact === true);
  convert(gpu, staged.buffer, format, out.buffer, dtype, out.size);
  staged.release();
  return out;
}

/** Converts `n` elements of `src` (format `from`) into `dst` (format `to`). */
function convert(gpu: Gpu, src: GPUBuffer, from: HostFormat, dst: GPUBuffer, to: HostFormat, n: number): void {
  const mode = MODES[`${from}>${to}`];
  if (mode === undefined) throw new Error(`cast: no conversion from ${from} to ${to}`);
  const srcBytes = bytesPerElement(from);
  const dstBytes = bytesPerElement(to);
  // Windows keep each binding under the limit (a 49408×1280 f32 embedding table is 253 MB);
  // their 256-byte aligned starts are even elements, as the pairwise modes need.
  for (const w of alignedWindows('cast', gpu, n, [srcBytes, dstBytes])) {
    const words = Math.ceil(w.count / 2); // every mode works on pairs of elements
    gpu.dispatch({
      kernel,
      defines: { MODE: mode },
      uniforms: { n: w.count, words },
      bindings: [
        { buffer: src, offset: w.start * srcBytes, size: roundUp4(w.count * srcBytes) },
        { buffer: dst, offset: w.start * dstBytes, size: roundUp4(w.count * dstBytes) },
      ],
      workgroups: grid(words),
    });
  }
}

const roundUp4 = (bytes: number): number => Math.ceil(bytes / 4) * 4;
