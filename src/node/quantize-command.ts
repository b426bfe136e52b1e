// Node-only: `sdxl-turbo quantize --model SRC --out DIR` writes an 8-bit copy of a diffusers
// folder (docs/Q8.md): the text encoders' and UNet's Linear and conv weights as I8 values with
// F16 scales (`X` and `X_scale`), quantized on the GPU by the kernel the pipeline uses at load,
// every other tensor as it was, a "quantization" entry in those three config.json files; the
// VAE, configs and tokenizers copied. `--model DIR` then loads it without quantizing. The folder
// appears whole or not at all (writeFolderAtomic).

import { mkdir, open, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { asUsage, usage } from '../errors.js';
import { openNodeGpu } from '../gpu/node.js';
import type { Gpu } from '../gpu/runtime.js';
import { MODEL_COMPONENTS, type ModelComponent, ModelFolder, TOKENIZER_FILES, weightCandidates } from '../io/model-folder.js';
import { Q8_CONFIG, scaleName } from '../io/q8-source.js';
import { encodeSafetensorsHeader, type SafetensorsDType, type TensorSpec } from '../io/safetensors.js';
import type { TensorSource } from '../io/tensor-source.js';
import { uploadAs } from '../ops/cast.js';
import { q8Dims, quantize } from '../ops/quantize.js';
import { prepareModel } from '../pipeline/sdxl-turbo.js';
import { writeBytes, writeFolderAtomic } from './atomic-write.js';
import { openModel } from './model-source.js';

const DTYPES: Record<string, SafetensorsDType> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

export const QUANTIZE_HELP = `sdxl-turbo quantize --model SRC --out DIR [--variant fp16|fp32] [--revision REV]

Writes DIR, a diffusers folder whose text encoders and UNet hold their Linear and conv weights
8-bit (int8 with an f16 scale per output channel and block of 32 inputs; docs/Q8.md); the VAE,
configs and tokenizers are copied. \`generate --model DIR\` loads it 8-bit, without quantizing.
SRC is a diffusers folder, a Hugging Face repo id or a base URL. DIR must not exist.
`;

export interface QuantizeReport {
  /** Bytes written per weight file, by its path inside the folder. */
  readonly files: ReadonlyArray<{ readonly path: string; readonly bytes: number }>;
}

/** Quantizes the folder `model` names into the new folder `out`. */
export async function quantizeModel(model: string, out: string, options: { variant?: 'fp16' | 'fp32'; revision?: string; log?: (line: string) => void } = {}): Promise<QuantizeReport> {
  if (await stat(out).catch(() => null)) usage(`--out ${out}: already exists; name a new folder`);
  const opened = await openModel(model, options.revision === undefined ? {} : { revision: options.revision });
  if ('checkpoint' in opened) {
    await opened.checkpoint.close?.();
    usage(`--model ${model}: a single-file checkpoint; quantize takes a diffusers folder`);
  }
  const folder = await asUsage(ModelFolder.open(opened, options.variant ? { variant: options.variant } : {}));
  let gpu: Gpu | null = null;
  try {
    const done = MODEL_COMPONENTS.filter((c) => folder.quantized(c));
    if (done.length > 0) usage(`--model ${model}: ${done.join(', ')} 8-bit already`);
    const prepared = await prepareModel(folder);
    const quantizable: Record<ModelComponent, ReadonlySet<string>> = {
      text_encoder: prepared.encoders.te1.registry.quantizable(),
      text_encoder_2: prepared.encoders.te2.registry.quantizable(),
      unet: prepared.unet.registry.quantizable(),
      vae: new Set(),
    };
    gpu = await openNodeGpu({});
    const files: Array<{ path: string; bytes: number }> = [];
    await writeFolderAtomic(out, async (dir) => {
      const write = async (path: string, text: string): Promise<void> => {
        await mkdir(join(dir, path, '..'), { recursive: true });
        await writeBytes(join(dir, path), new TextEncoder().encode(text));
      };
      await write('model_index.json', await folder.readText('model_index.json'));
      await write('scheduler/scheduler_config.json', await folder.readText('scheduler/scheduler_config.json'));
      for (const t of ['tokenizer', 'tokenizer_2']) for (const f of TOKENIZER_FILES) await write(`${t}/${f}`, await folder.readText(`${t}/${f}`));
      for (const component of MODEL_COMPONENTS) {
        const q8 = component !== 'vae';
        const config = { ...folder.config(component), ...(q8 ? { quantization: Q8_CONFIG } : {}) };
        await write(`${component}/config.json`, `${JSON.stringify(config, null, 2)}\n`);
        // 8-bit files are single files without a variant suffix (any variant finds them); the VAE
        // keeps its file's name (one file made of shards gets the name of its dtype).
        const source = folder.weights(component);
        const chosen = folder.weightFile(component);
        const path = q8 ? weightCandidates(component, 'fp32')[0]! : chosen.endsWith('.safetensors') ? `${component}/${basename(chosen)}` : vaeName(source);
        const bytes = await writeWeights(gpu!, source, quantizable[component], join(dir, path));
        files.push({ path, bytes });
        options.log?.(`${path}: ${(bytes / 1e6).toFixed(1)} MB${q8 ? ' (8-bit)' : ''}`);
      }
    });
    return { files };
  } finally {
    gpu?.dispose();
    await folder.close();
  }
}

function vaeName(source: TensorSource): string {
  const f16 = [...source.entries.values()].every((e) => e.format === 'f16');
  return weightCandidates('vae', f16 ? 'fp16' : 'fp32')[0]!;
}

/** One safetensors file of `source`'s tensors, those in `quantizable` 8-bit; streamed tensor by
 *  tensor (a 2.6 GB UNet is never whole in memory). Returns its bytes. */
async function writeWeights(gpu: Gpu, source: TensorSource, quantizable: ReadonlySet<string>, path: string): Promise<number> {
  const specs: TensorSpec[] = [];
  for (const [name, entry] of source.entries) {
    if (quantizable.has(name)) {
      const { rows, blocks } = q8Dims(entry.shape);
      specs.push({ name, dtype: 'I8', shape: entry.shape }, { name: scaleName(name), dtype: 'F16', shape: [rows, blocks] });
    } else specs.push({ name, dtype: DTYPES[entry.format]!, shape: entry.shape });
  }
  await mkdir(join(path, '..'), { recursive: true });
  const handle = await open(path, 'wx', 0o666);
  let bytes = 0;
  const put = async (data: ArrayBufferView): Promise<void> => {
    await handle.write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    bytes += data.byteLength;
  };
  try {
    await put(encodeSafetensorsHeader(specs));
    for (const [name, entry] of source.entries) {
      const host = await source.read(name);
      if (!quantizable.has(name)) {
        await put(host.data);
        continue;
      }
      // As WeightRegistry quantizes at load: from the file's values (f16 where the device has
      // shader-f16, else widened to f32), so a loaded folder equals a quantized-at-load model.
      const float = uploadAs(gpu, host.data, host.format, entry.shape, host.format === 'f16' && gpu.f16 ? 'f16' : 'f32', { label: name, exact: true });
      const q = quantize(float, name);
      float.release();
      const { values, scales } = await q.read();
      q.release();
      await put(values);
      await put(scales);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return bytes;
}

/** `sdxl-turbo quantize …` */
export async function quantizeCommand(argv: string[], io: { out(line: string): void }): Promise<void> {
  const { values: v } = await asUsage(() =>
    parseArgs({ args: argv, options: { model: { type: 'string', short: 'm' }, out: { type: 'string', short: 'o' }, variant: { type: 'string' }, revision: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }),
  );
  if (v.help) return io.out(QUANTIZE_HELP);
  if (v.model === undefined) usage('--model is required (the diffusers folder to quantize)');
  if (v.out === undefined) usage('--out is required (the new folder to write)');
  if (v.variant !== undefined && v.variant !== 'fp16' && v.variant !== 'fp32') usage(`--variant must be fp16 or fp32, got "${v.variant}"`);
  const report = await quantizeModel(v.model, v.out, { ...(v.variant ? { variant: v.variant as 'fp16' | 'fp32' } : {}), ...(v.revision ? { revision: v.revision } : {}), log: (line) => io.out(line) });
  io.out(`wrote ${v.out} (${(report.files.reduce((s, f) => s + f.bytes, 0) / 1e6).toFixed(1)} MB of weights)`);
}
