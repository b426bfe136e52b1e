#!/usr/bin/env node
// sdxl-turbo CLI: `generate` (text-to-image, image-to-image) and `tokenize`.
// Every option, file and size is checked before any weight is uploaded; a bad one is one line
// on stderr and exit 2; any other failure (GPU, network, a bug) exits 1. The GPU is always
// disposed, since Dawn keeps Node alive while its device is referenced.

import { realpathSync } from 'node:fs';
import { access, constants, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { asUsage, UsageError, usage } from './errors.js';
import { openNodeGpu } from './gpu/node.js';
import type { Gpu } from './gpu/runtime.js';
import { ModelFolder } from './io/model-folder.js';
import { readPng, writePng } from './io/png.js';
import { formatMemoryPlan } from './models/memory-plan.js';
import { openModel } from './node/model-source.js';
import { ProgressReporter, type TerminalStream } from './node/progress.js';
import { readRandomInputs, writeTensors } from './node/tensor-files.js';
import {
  checkInteger,
  checkSize,
  checkStrength,
  type ComputeDType,
  DEFAULT_SIZE,
  imageDefaultSize,
  img2imgSteps,
  MAX_IMAGES_PER_PROMPT,
  MAX_STEPS,
  type RgbImage,
  type Stage,
  type WeightVariant,
} from './pipeline/options.js';
import { checkRun, planRun, type RunShape } from './pipeline/preflight.js';
import { loadTokenizers, pickDtype, SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';

const HELP = `sdxl-turbo — SDXL-Turbo on WebGPU

Usage:
  sdxl-turbo generate --model MODEL --prompt TEXT [options]
  sdxl-turbo tokenize --model MODEL --prompt TEXT

MODEL is a diffusers folder, a Hugging Face repo id (org/name, downloaded to the HF cache) or
an http(s) base URL of such a folder.

generate options:
  --prompt TEXT         the prompt ("" is allowed); repeat it for a batch of prompts
  --steps N             denoising steps (default 1; SDXL-Turbo is made for 1–4; image-to-image:
                        the fewest of which the strength keeps one, e.g. 2 at 0.5)
  --seed N              seed of the torch-compatible CPU generator (default random; printed)
  --width W --height H  image size, multiples of 8 (default 512×512; image-to-image: the
                        input's size rounded down to multiples of 8)
  --num-images N        images per prompt (default 1)
  --image IN.png        image-to-image from this picture
  --strength S          image-to-image strength in (0, 1] (default 0.5); steps × S must be ≥ 1
  --out OUT.png         output file (default out.png); a batch writes OUT-1.png, OUT-2.png, …
  --variant fp16|fp32   which weight files to read (default fp16 where present)
  --dtype f16|f32       compute precision (default f16 where the adapter has shader-f16)
  --inputs F            safetensors with the random tensors to use instead of drawing them:
                        initial_latents, step{i}.noise, posterior_noise, add_noise_noise
  --save-tensors F      write final_latents, image, prompt_embeds, pooled_prompt_embeds
  --verbose             adapter, precision, weight files, memory plan, per-stage times
  --profile             per-kernel GPU times (needs the adapter's timestamp-query)

Exit status: 0 done, 2 bad input (one line on stderr naming it), 1 any other failure.
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
} as const satisfies ParseArgsConfig['options'];

const TOKENIZE_OPTIONS = {
  model: { type: 'string' },
  prompt: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** Where the CLI writes: results and --verbose reports, the error line, progress bars (TTY only). */
export interface CliIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly progress: TerminalStream;
}

const PROCESS_IO: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  progress: process.stderr,
};

function parse<O extends NonNullable<ParseArgsConfig['options']>>(options: O, args: string[]) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    // Node's messages name the option ("Unknown option '--foo'…"), some over several lines.
    usage(`${(e as Error).message.replace(/\s*\n\s*/g, ' ')} (see sdxl-turbo --help)`);
  }
}

/** A whole decimal number; "1.5", "1e3", "-1" and "" are refused by option name. */
function integer(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) usage(`${name} must be a whole number, got "${text}"`);
  return Number(text);
}

function decimal(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) usage(`${name} must be a number, got "${text}"`);
  return value;
}

function oneOf<const T extends string>(name: string, text: string | undefined, allowed: readonly T[]): T | undefined {
  if (text === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(text)) usage(`${name} must be ${allowed.join(' or ')}, got "${text}"`);
  return text as T;
}

function required<T>(name: string, value: T | undefined): T {
  if (value === undefined) usage(`${name} is required (see sdxl-turbo --help)`);
  return value;
}

/** An output file's folder must exist and be writable before minutes of work go into it. */
async function checkOutput(option: string, path: string): Promise<void> {
  const dir = dirname(resolve(path));
  if ((await stat(path).catch(() => null))?.isDirectory()) usage(`${option} ${path}: is a directory`);
  if (!(await stat(dir).catch(() => null))?.isDirectory()) usage(`${option} ${path}: no such directory ${dir}`);
  await access(dir, constants.W_OK).catch(() => usage(`${option} ${path}: cannot write to ${dir}`));
}

/** Image-to-image without --steps: the fewest steps of which the strength keeps one (2 at 0.5). */
function fewestSteps(strength: number): number {
  let steps = Math.ceil(1 / strength);
  while (Math.floor(steps * strength) < 1) steps++; // 1/strength rounded down in floating point
  return steps;
}

/** OUT.png for one image, else OUT-1.png, OUT-2.png, … in batch order (prompt by prompt). */
function outPaths(out: string, count: number): string[] {
  if (count === 1) return [out];
  const stem = out.slice(0, -'.png'.length);
  return Array.from({ length: count }, (_, i) => `${stem}-${i + 1}${out.slice(stem.length)}`);
}

interface GenerateArgs {
  readonly model: string;
  readonly prompts: string[];
  readonly steps: number;
  /** Steps actually run: image-to-image keeps steps × strength of them. */
  readonly denoisingSteps: number;
  readonly seed: number | undefined;
  /** As given; the defaults depend on the model (image-to-image) and are set once it is open. */
  readonly width: number | undefined;
  readonly height: number | undefined;
  readonly imagesPerPrompt: number;
  readonly image: RgbImage | undefined;
  readonly strength: number;
  readonly out: string;
  readonly variant: WeightVariant | undefined;
  readonly dtype: ComputeDType | undefined;
  readonly inputsPath: string | undefined;
  readonly inputs: Map<string, Float32Array> | undefined;
  readonly saveTensors: string | undefined;
  readonly verbose: boolean;
  readonly profile: boolean;
}

/** Every generate option checked, the --image and --inputs files read: no model touched yet. */
async function generateArgs(v: ReturnType<typeof parse<typeof GENERATE_OPTIONS>>): Promise<GenerateArgs> {
  const model = required('--model', v.model);
  const prompts = required('--prompt', v.prompt);
  const stepsText = integer('--steps', v.steps);
  const seedText = integer('--seed', v.seed);
  const seed = seedText === undefined ? undefined : checkInteger('--seed', seedText, 0);
  const imagesPerPrompt = checkInteger('--num-images', integer('--num-images', v['num-images']) ?? 1, 1, MAX_IMAGES_PER_PROMPT);
  const widthText = integer('--width', v.width);
  const heightText = integer('--height', v.height);
  if (widthText !== undefined) checkSize('--width', widthText);
  if (heightText !== undefined) checkSize('--height', heightText);
  const strengthText = decimal('--strength', v.strength);
  if (strengthText !== undefined && v.image === undefined) usage('--strength needs --image (image-to-image)');
  const strength = checkStrength(strengthText ?? 0.5, '--strength');
  const steps = checkInteger('--steps', stepsText ?? (v.image === undefined ? 1 : fewestSteps(strength)), 1, MAX_STEPS);
  const denoisingSteps = v.image === undefined ? steps : img2imgSteps(steps, strength);
  const out = v.out ?? 'out.png';
  if (!/\.png$/i.test(out)) usage(`--out must name a .png file, got "${out}"`);
  const variant = oneOf('--variant', v.variant, ['fp16', 'fp32'] as const);
  const dtype = oneOf('--dtype', v.dtype, ['f16', 'f32'] as const);
  const image = v.image === undefined ? undefined : await asUsage(readPng(v.image)).catch((e: Error) => usage(`--image: ${e.message}`));
  const inputs = v.inputs === undefined ? undefined : await readRandomInputs(v.inputs);
  await checkOutput('--out', out);
  if (v['save-tensors'] !== undefined) await checkOutput('--save-tensors', v['save-tensors']);
  return {
    model,
    prompts,
    steps,
    denoisingSteps,
    seed,
    width: widthText,
    height: heightText,
    imagesPerPrompt,
    image,
    strength,
    out,
    variant,
    dtype,
    inputsPath: v.inputs,
    inputs,
    saveTensors: v['save-tensors'],
    verbose: v.verbose === true,
    profile: v.profile === true,
  };
}

async function generate(argv: string[], io: CliIo): Promise<void> {
  const v = parse(GENERATE_OPTIONS, argv);
  if (v.help) return io.out(HELP);
  const a = await generateArgs(v);
  const progress = new ProgressReporter(io.progress);
  try {
    const fs = await openModel(a.model, { variant: a.variant, onDownload: (e) => progress.download(e) });
    const folder = await asUsage(ModelFolder.open(fs, { variant: a.variant }));
    let shape: RunShape;
    let gpu: Gpu;
    try {
      const defaults = a.image ? imageDefaultSize(a.image) : { width: DEFAULT_SIZE, height: DEFAULT_SIZE };
      const [width, height] = [a.width ?? defaults.width, a.height ?? defaults.height];
      shape = { width, height, batch: a.prompts.length * a.imagesPerPrompt, steps: a.denoisingSteps, imageToImage: a.image !== undefined };
      // The checks the pipeline repeats when it runs, made here before the GPU is opened and any
      // weight is uploaded.
      await checkRun(folder, shape, a.inputs, `--inputs ${a.inputsPath}`);
      gpu = await openNodeGpu({ profile: a.profile, allowF16: a.dtype !== 'f32' });
    } catch (e) {
      await folder.close();
      throw e;
    }
    let pipeline: SdxlTurboPipeline | null = null;
    try {
      const dtype = pickDtype(gpu, a.dtype);
      const memory = await planRun(folder, shape, dtype, gpu.limits);
      pipeline = await SdxlTurboPipeline.load(gpu, folder, { variant: a.variant, dtype, profile: a.profile, onProgress: (e) => progress.update(e) }, true);
      progress.done();
      // Per-kernel times of the generation only, not of the weight conversions while loading.
      await pipeline.kernelTimings();
      gpu.profiler?.reset();
      if (a.verbose) {
        for (const line of pipeline.describe()) io.out(line);
        io.out(formatMemoryPlan(memory.plan, memory.options));
      }
      const common = {
        prompt: a.prompts,
        steps: a.steps,
        seed: a.seed,
        width: shape.width,
        height: shape.height,
        imagesPerPrompt: a.imagesPerPrompt,
        inputs: a.inputs,
        returnTensors: a.saveTensors !== undefined,
        onProgress: (e: Parameters<typeof progress.update>[0]) => progress.update(e),
      };
      const result = a.image ? await pipeline.imageToImage({ ...common, image: a.image, strength: a.strength }) : await pipeline.generate(common);
      progress.done();
      const paths = outPaths(a.out, result.images.length);
      await Promise.all(result.images.map((image, i) => writePng(paths[i]!, image)));
      if (a.saveTensors !== undefined) await writeTensors(a.saveTensors, result.tensors!);
      io.out(`wrote ${[...paths, ...(a.saveTensors !== undefined ? [a.saveTensors] : [])].join(', ')} (seed ${result.seed})`);
      if (a.verbose) {
        for (const [stage, ms] of Object.entries(result.timings) as Array<[Stage, number]>) io.out(`${stage.padEnd(16)}${ms.toFixed(0).padStart(8)} ms`);
      }
      if (a.profile) {
        if (!gpu.profiler) io.out(`profile: ${gpu.adapterName} has no timestamp-query, so no per-kernel GPU times`);
        else for (const k of await pipeline.kernelTimings()) io.out(`${k.kernel.padEnd(56)}${String(k.calls).padStart(6)}×${k.totalMs.toFixed(2).padStart(11)} ms`);
      }
    } finally {
      if (pipeline) await pipeline.dispose();
      else {
        gpu.dispose();
        await folder.close();
      }
    }
  } finally {
    progress.done();
  }
}

async function tokenize(argv: string[], io: CliIo): Promise<void> {
  const v = parse(TOKENIZE_OPTIONS, argv);
  if (v.help) return io.out(HELP);
  const model = required('--model', v.model);
  const prompt = required('--prompt', v.prompt);
  const fs = await openModel(model);
  const read = async (path: string): Promise<string> => (await fs.readText(path)) ?? usage(`${fs.description}/${path}: missing`);
  const [tokenizer, tokenizer2] = await asUsage(loadTokenizers(read, fs.description));
  io.out(JSON.stringify({ tokenizer: [...tokenizer.encode(prompt)], tokenizer_2: [...tokenizer2.encode(prompt)] }));
}

/** Runs one command line (without `node` and the script); returns the exit status. */
export async function main(argv: string[], io: CliIo = PROCESS_IO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'generate') await generate(rest, io);
    else if (command === 'tokenize') await tokenize(rest, io);
    else if (command === undefined || command === '--help' || command === '-h' || command === 'help') io.out(HELP);
    else usage(`unknown command "${command}" (expected generate or tokenize; see sdxl-turbo --help)`);
    return 0;
  } catch (e) {
    const message = (e as Error).message ?? String(e);
    if (e instanceof UsageError) {
      io.err(`sdxl-turbo: ${message.replace(/\s*\n\s*/g, '; ')}`);
      return 2;
    }
    io.err(`sdxl-turbo: error: ${message.split('\n').join('\n  ')}`);
    return 1;
  }
}

/** Run as the program (also through npm's bin symlink), not when a test imports main(). */
function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMain()) process.exitCode = await main(process.argv.slice(2));
