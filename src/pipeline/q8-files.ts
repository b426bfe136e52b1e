// The 8-bit weight files of a model (docs/Q8.md, "In files"), made tensor by tensor on the GPU
// by the kernel the pipeline quantizes with at load: what `sdxl-turbo quantize` writes to disk
// and the browser keeps in Cache Storage. Streamed: one tensor is in memory at a time, never a
// whole file (Chrome caps an ArrayBuffer near 2 GB; SDXL's UNet is 2.7 GB 8-bit).

import type { Gpu } from '../gpu/runtime.js';
import type { ModelComponent, ModelFolder } from '../io/model-folder.js';
import { weightCandidates } from '../io/model-folder.js';
import { Q8_CONFIG, scaleName } from '../io/q8-source.js';
import { encodeSafetensorsHeader, type SafetensorsDType, tensorBytes, type TensorSpec } from '../io/safetensors.js';
import type { TensorSource } from '../io/tensor-source.js';
import { uploadAs } from '../ops/cast.js';
import { q8Dims, quantize } from '../ops/quantize.js';
import type { PreparedModel } from './sdxl-turbo.js';

const DTYPES: Record<string, SafetensorsDType> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

/** The networks whose Linear and conv weights are 8-bit (never the VAE). */
export const Q8_COMPONENTS = ['text_encoder', 'text_encoder_2', 'unet'] as const satisfies readonly ModelComponent[];

/** One 8-bit network's file: its path in the folder, its config.json, its size and its bytes. */
export interface Q8File {
  readonly component: (typeof Q8_COMPONENTS)[number];
  /** One file without a variant suffix (any variant finds it): e.g. unet/diffusion_pytorch_model.safetensors. */
  readonly path: string;
  /** The source's config.json with the "quantization" entry. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly bytes: number;
  /** The file from its first byte, a tensor at a time (each call quantizes again). */
  chunks(): AsyncGenerator<Uint8Array>;
}

/** The three 8-bit files of `folder`'s networks (their weights declared `quantizable` by
 *  `prepared`, the model built from that folder), quantized on `gpu` as they are read. */
export function q8Files(gpu: Gpu, folder: ModelFolder, prepared: PreparedModel): Q8File[] {
  const registries = { text_encoder: prepared.encoders.te1.registry, text_encoder_2: prepared.encoders.te2.registry, unet: prepared.unet.registry };
  return Q8_COMPONENTS.map((component) => {
    const source = folder.weights(component);
    const quantizable = registries[component].quantizable();
    const { header, bytes } = safetensorsLayout(source, quantizable);
    return {
      component,
      path: weightCandidates(component, 'fp32')[0]!,
      config: { ...folder.config(component), quantization: Q8_CONFIG },
      bytes,
      chunks: () => fileChunks(gpu, source, quantizable, header),
    };
  });
}

/** `source`'s tensors as one safetensors file, those in `quantizable` 8-bit (the VAE: none). */
export function safetensorsChunks(gpu: Gpu, source: TensorSource, quantizable: ReadonlySet<string>): { bytes: number; chunks: AsyncGenerator<Uint8Array> } {
  const { header, bytes } = safetensorsLayout(source, quantizable);
  return { bytes, chunks: fileChunks(gpu, source, quantizable, header) };
}

function safetensorsLayout(source: TensorSource, quantizable: ReadonlySet<string>): { header: Uint8Array; bytes: number } {
  const specs: TensorSpec[] = [];
  for (const [name, entry] of source.entries) {
    if (quantizable.has(name)) {
      const { rows, blocks } = q8Dims(entry.shape);
      specs.push({ name, dtype: 'I8', shape: entry.shape }, { name: scaleName(name), dtype: 'F16', shape: [rows, blocks] });
    } else specs.push({ name, dtype: DTYPES[entry.format]!, shape: entry.shape });
  }
  const header = encodeSafetensorsHeader(specs);
  return { header, bytes: specs.reduce((sum, s) => sum + tensorBytes(s.dtype, s.shape), header.byteLength) };
}

/** The header, then each tensor in the header's order: a float one as read, an 8-bit one as
 *  its values then its scales (the layouts of docs/Q8.md). */
async function* fileChunks(gpu: Gpu, source: TensorSource, quantizable: ReadonlySet<string>, header: Uint8Array): AsyncGenerator<Uint8Array> {
  const bytes = (data: ArrayBufferView): Uint8Array => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  yield header;
  for (const [name, entry] of source.entries) {
    const host = await source.read(name);
    if (!quantizable.has(name)) {
      yield bytes(host.data);
      continue;
    }
    // As WeightRegistry quantizes at load: from the file's values (f16 where the device has
    // shader-f16, else widened to f32), so these files equal a model quantized at load.
    const float = uploadAs(gpu, host.data, host.format, entry.shape, host.format === 'f16' && gpu.f16 ? 'f16' : 'f32', { label: name, exact: true });
    const q = quantize(float, name);
    float.release();
    const { values, scales } = await q.read();
    q.release();
    yield bytes(values);
    yield bytes(scales);
  }
}
