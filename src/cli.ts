#!/usr/bin/env node
// sdxl-turbo CLI: `generate` (text-to-image, image-to-image) and `tokenize`.
// Bad input → one line on stderr and exit 2; any other failure → exit 1.

import { parseArgs } from 'node:util';
import { UsageError, usage } from './errors.js';
import { readPng, writePng } from './io/png.js';
import { readSafetensorsTensors, writeSafetensors } from './node/tensor-files.js';
import { openModel } from './node/model-source.js';
import { NoAdapterError } from './gpu/runtime.js';
import type { ProgressEvent, Stage } from './pipeline/options.js';
import { loadPipeline, type GenerateResult } from './index.js';
import { loadTokenizers } from './pipeline/sdxl-turbo.js';
import { ProgressReporter } from './node/progress.js';

const HELP = `sdxl-turbo — SDXL-Turbo on WebGPU

Usage:
  sdxl-turbo generate --model DIR|ORG/NAME --prompt TEXT [options]
  sdxl-turbo tokenize --model DIR|ORG/NAME --prompt TEXT

generate options:
  --model DIR|ID        diffusers folder, Hugging Face repo id (downloaded to the HF cache) or URL
  --prompt TEXT         the prompt (repeat for a batch of prompts; "" is allowed)
  --steps N             denoising steps (default 1; SDXL-Turbo is made for 1–4)
  --seed N              seed of the torch-compatible CPU generator (default: random, printed)
  --width W --height H  image size, multiples of 8 (default 512×512)
  --num-images N        images per prompt (default 1)
  --image IN.png        image-to-image: the input picture
  --strength S          image-to-image strength in (0, 1] (default 0.5); steps × S must be ≥ 1
  --out OUT.png         output file (default out.png; a batch writes OUT-1.png, OUT-2.png, …)
  --variant fp16|fp32   which weight files to read (default fp16 when present)
  --dtype f16|f32       compute precision (default f16 when the adapter has shader-f16)
  --inputs F            safetensors with the random tensors to use instead of the seed's
  --save-tensors F      write final_latents, image, prompt_embeds, pooled_prompt_embeds
  --verbose             adapter, memory plan, per-stage (and with --profile per-kernel) times
  --profile             per-kernel GPU times (needs timestamp queries)
`;

const GENERATE_OPTIONS = {
  model: { type: 'string' },
  prompt: { type: 'string', multiple: true },
  steps: { type: 'string' },
  seed: { type: 'string' },
  width: { type: 'string' },
  height: { type: 'string' },
  'num-images': { type: 'string' },
  image: { type: 'string' },
  strength: { type: 'string' },
  out: { type: 'string' },
  variant: { type: 'string' },
  dtype: { type: 'string' },
  inputs: { type: 'string' },
  'save-tensors': { type: 'string' },
  verbose: { type: 'boolean' },
  profile: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parses a whole decimal number; rejects "1.5", "1e3", "" and friends by name. */
function integer(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text.trim())) usage(`--${name} must be a whole number, got "${text}"`);
  return Number(text);
}

function decimal(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v)) usage(`--${name} must be a number, got "${text}"`);
  return v;
}

function oneOf<const T extends string>(name: string, text: string | undefined, allowed: readonly T[]): T | undefined {
  if (text === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(text)) usage(`--${name} must be one of ${allowed.join(', ')}, got "${text}"`);
  return text as T;
}

function required(name: string, value: string | undefined): string {
  if (value === undefined) usage(`--${name} is required (see sdxl-turbo --help)`);
  return value;
}

function parse(args: string[]): ReturnType<typeof parseArgs<{ options: typeof GENERATE_OPTIONS; allowPositionals: false; strict: true; args: string[] }>>['values'] {
  try {
    return parseArgs({ args, options: GENERATE_OPTIONS, allowPositionals: false, strict: true }).values;
  } catch (e) {
    usage((e as Error).message.split('\n')[0]!);
  }
}

function outPaths(out: string, count: number): string[] {
  if (count === 1) return [out];
  const dot = out.toLowerCase().endsWith('.png') ? out.length - 4 : out.length;
  return Array.from({ length: count }, (_, i) => `${out.slice(0, dot)}-${i + 1}${out.slice(dot)}`);
}

async function generate(args: string[], log: (line: string) => void): Promise<void> {
  const v = parse(args);
  if (v.help) return log(HELP);
  const model = required('model', v.model);
  const prompts = v.prompt ?? usage('--prompt is required (use --prompt "" for the empty prompt)');
  const strength = decimal('strength', v.strength);
  if (v.strength !== undefined && v.image === undefined) usage('--strength needs --image (image-to-image)');
  const out = v.out ?? 'out.png';
  if (!out.toLowerCase().endsWith('.png')) usage(`--out must name a .png file, got "${out}"`);
  const inputs = v.inputs === undefined ? undefined : await readSafetensorsTensors(v.inputs);
  const image = v.image === undefined ? undefined : await readPng(v.image);
  const verbose = v.verbose === true;
  const progress = new ProgressReporter(process.stderr);

  const variant = oneOf('variant', v.variant, ['fp16', 'fp32'] as const);
  const source = await openModel(model, { variant, onDownload: (e) => progress.download(e) });
  const pipeline = await loadPipeline(source, {
    variant,
    dtype: oneOf('dtype', v.dtype, ['f16', 'f32'] as const),
    profile: v.profile === true,
    onProgress: (e: ProgressEvent) => progress.update(e),
  });
  try {
    if (verbose) for (const line of pipeline.describe()) log(line);
    const common = {
      prompt: prompts,
      steps: integer('steps', v.steps),
      seed: integer('seed', v.seed),
      width: integer('width', v.width),
      height: integer('height', v.height),
      imagesPerPrompt: integer('num-images', v['num-images']),
      inputs,
      returnTensors: v['save-tensors'] !== undefined,
      onProgress: (e: ProgressEvent) => progress.update(e),
    };
    const result: GenerateResult = image
      ? await pipeline.imageToImage({ ...common, image, strength: strength ?? 0.5 })
      : await pipeline.generate(common);
    progress.done();
    const paths = outPaths(out, result.images.length);
    await Promise.all(result.images.map((img, i) => writePng(paths[i]!, img)));
    if (v['save-tensors'] !== undefined && result.tensors) await writeSafetensors(v['save-tensors'], result.tensors);
    log(`wrote ${paths.join(', ')} (seed ${result.seed})`);
    if (verbose) {
      for (const [stage, ms] of Object.entries(result.timings) as Array<[Stage, number]>) log(`  ${stage.padEnd(14)} ${ms.toFixed(0).padStart(8)} ms`);
      for (const k of await pipeline.kernelTimings()) log(`  ${k.kernel.padEnd(48)} ${String(k.calls).padStart(5)}× ${k.totalMs.toFixed(2).padStart(10)} ms`);
    }
  } finally {
    progress.done();
    await pipeline.dispose();
  }
}

async function tokenize(args: string[], log: (line: string) => void): Promise<void> {
  let values: { model?: string; prompt?: string };
  try {
    values = parseArgs({ args, options: { model: { type: 'string' }, prompt: { type: 'string' } }, strict: true }).values;
  } catch (e) {
    usage((e as Error).message.split('\n')[0]!);
  }
  const source = await openModel(required('model', values.model));
  const prompt = values.prompt ?? usage('--prompt is required');
  const read = async (path: string): Promise<string> => (await source.readText(path)) ?? usage(`${source.description}/${path}: missing`);
  const [tokenizer, tokenizer2] = await loadTokenizers(read, source.description);
  log(JSON.stringify({ tokenizer: [...tokenizer.encode(prompt)], tokenizer_2: [...tokenizer2.encode(prompt)] }));
}

export async function main(argv: string[], log = (line: string) => console.log(line)): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'generate') await generate(rest, log);
    else if (command === 'tokenize') await tokenize(rest, log);
    else if (command === undefined || command === '--help' || command === '-h' || command === 'help') log(HELP);
    else usage(`unknown command "${command}" (expected generate or tokenize; see --help)`);
    return 0;
  } catch (e) {
    const error = e as Error;
    const isUsage = e instanceof UsageError || e instanceof NoAdapterError;
    process.stderr.write(`sdxl-turbo: ${isUsage ? '' : 'error: '}${error.message.split('\n').join('\n  ')}\n`);
    return isUsage ? 2 : 1;
  }
}

// Only when run as the program (not when a test imports main()).
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
