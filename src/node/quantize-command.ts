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
import { MODEL_COMPONENTS, ModelFolder, TOKENIZER_FILES, weightCandidates } from '../io/model-folder.js';
import type { TensorSource } from '../io/tensor-source.js';
import { q8Files, safetensorsChunks } from '../pipeline/q8-files.js';
import { prepareModel } from '../pipeline/sdxl-turbo.js';
import { writeBytes, writeFolderAtomic } from './atomic-write.js';
import { openModel } from './model-source.js';

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
      for (const file of q8Files(gpu!, folder, prepared)) {
        await write(`${file.component}/config.json`, `${JSON.stringify(file.config, null, 2)}\n`);
        await writeChunks(file.chunks(), join(dir, file.path));
        files.push({ path: file.path, bytes: file.bytes });
        options.log?.(`${file.path}: ${(file.bytes / 1e6).toFixed(1)} MB (8-bit)`);
      }
      // The VAE keeps its file's name (one file made of shards gets the name of its dtype).
      await write('vae/config.json', `${JSON.stringify(folder.config('vae'), null, 2)}\n`);
      const source = folder.weights('vae');
      const chosen = folder.weightFile('vae');
      const path = chosen.endsWith('.safetensors') ? `vae/${basename(chosen)}` : vaeName(source);
      const vae = safetensorsChunks(gpu!, source, new Set());
      await writeChunks(vae.chunks, join(dir, path));
      files.push({ path, bytes: vae.bytes });
      options.log?.(`${path}: ${(vae.bytes / 1e6).toFixed(1)} MB`);
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

/** Writes a file from its chunks (a 2.6 GB UNet is never whole in memory). */
async function writeChunks(chunks: AsyncIterable<Uint8Array>, path: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  const handle = await open(path, 'wx', 0o666);
  try {
    for await (const chunk of chunks) await handle.write(chunk);
    await handle.sync();
  } finally {
    await handle.close();
  }
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
