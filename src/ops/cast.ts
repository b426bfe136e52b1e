import source from '../../kernels/cast.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups, type Gpu } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';

const layout = uniforms(['n', 'u32'], ['words', 'u32']);
const kernel = defineKernel('cast', source, layout);

type Format = 'f32' | 'f16' | 'bf16';
const MODES: Partial<Record<`${Format}>${Format}`, number>> = { 'f32>f16': 0, 'f16>f32': 1, 'bf16>f32': 2, 'bf16>f16': 3 };

/** Converts `n` elements of `src` (format `from`) into `dst` (format `to`). Takes raw
 *  buffers because uploads cast staging data that is not a tensor yet. */
export function castOnGpu(gpu: Gpu, src: GPUBuffer, from: Format, dst: GPUBuffer, to: Format, n: number): void {
  const mode = MODES[`${from}>${to}`];
  if (mode === undefined) throw new Error(`cast: no conversion from ${from} to ${to}`);
  const srcBytes = from === 'f32' ? 4 : 2;
  const dstBytes = to === 'f32' ? 4 : 2;
  // Chunks keep each binding under maxStorageBufferBindingSize (a 49408×1280 f32
  // embedding table is 253 MB); 1024-element steps keep offsets 256-byte aligned.
  const chunk = Math.floor(gpu.limits.maxStorageBufferBindingSize / 4 / 1024) * 1024;
  for (let start = 0; start < n; start += chunk) {
    const count = Math.min(chunk, n - start);
    const words = Math.ceil(count / 2); // every mode works on pairs of elements
    gpu.dispatch({
      kernel,
      defines: { MODE: mode },
      layout,
      uniforms: { n: count, words },
      bindings: [
        { buffer: src, offset: start * srcBytes, size: roundUp4(count * srcBytes) },
        { buffer: dst, offset: start * dstBytes, size: roundUp4(count * dstBytes) },
      ],
      workgroups: foldWorkgroups(Math.ceil(words / 256)),
    });
  }
}

const roundUp4 = (bytes: number): number => Math.ceil(bytes / 4) * 4;
