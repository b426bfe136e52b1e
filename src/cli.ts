#!/usr/bin/env node
// sdxl-turbo CLI: `generate` (text-to-image, image-to-image) and `tokenize`, a thin layer over
// the library: it turns flags into loadPipeline / generate options, reads and writes the files,
// and names the flag where the library names an option. Everything is checked before any weight
// is uploaded; a bad input is one line on stderr and exit 2; any other failure (GPU, network, a
// bug) exits 1.

import { readFileSync, realpathSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { asUsage, escapeControls, UsageError, usage } from './errors.js';
import { writeFilesAtomic } from './node/atomic-write.js';
import { readImage } from './node/image-file.js';
import { tokenizerFiles } from './node/model-source.js';
import { ProgressReporter, type TerminalStream } from './node/progress.js';
import { checkOutputs, type NamedPath } from './node/output-paths.js';
import { serve } from './node/serve-command.js';
import { quantizeCommand } from './node/quantize-command.js';
import { tuneCommand } from './node/tune-command.js';
import { encodeTensors, readRandomInputs } from './node/tensor-files.js';
import { loadPipeline, type NodeLoadOptions, type Pipeline } from './index.js';
import type { LoraOption } from './models/lora.js';
import { parseByteSize } from './pipeline/budget.js';
import { type ImageToImageOptions, resolveGenerate, type Stage } from './pipeline/options.js';
import type { SchedulerName, TimestepSpacing } from './pipeline/scheduler.js';
import { loadTokenizers } from './pipeline/sdxl-turbo.js';

export const HELP = `sdxl-turbo — SDXL-Turbo on WebGPU

Usage:
  sdxl-turbo generate -m MODEL -p TEXT [options]
  sdxl-turbo tokenize -m MODEL -p TEXT
  sdxl-turbo serve -m MODEL [--host 127.0.0.1] [--port 8188] [options]
  sdxl-turbo quantize -m MODEL -o DIR   (an 8-bit copy of a diffusers folder; --help for more)
  sdxl-turbo tune -m MODEL -W W -H H     (measure kernel variants on this GPU; --help for more)
  sdxl-turbo --version

MODEL is a diffusers folder, a Hugging Face repo id (org/name, downloaded to the HF cache) or
an http(s) base URL of such a folder; or a single-file SDXL checkpoint (SGM layout, as
sd_xl_turbo_1.0_fp16.safetensors and A1111/ComfyUI fine-tunes): FILE.safetensors, its http(s)
URL, or a hub file org/name/FILE.safetensors (downloaded to the HF cache).

generate options:
  -m, --model MODEL     the model (required)
  --config DIR          a single file's configs and tokenizers from this diffusers folder (or
                        base URL; its weights are not read); default: built-in SDXL-Turbo ones
  -p, --prompt TEXT     the prompt ("" is allowed); repeat it for a batch of prompts
  -s, --steps N         denoising steps (default 1; SDXL-Turbo is made for 1–4; image-to-image:
                        the fewest of which the strength keeps one, e.g. 2 at 0.5)
  --seed N              seed of the torch-compatible CPU generator, 0 … 2^64−1 (default or -1:
                        random; printed)
  -W, --width W         image size, multiples of 8 (default 512×512; image-to-image: the
  -H, --height H        input's size rounded down to multiples of 8)
  --num-images N        images per prompt (default 1)
  --image FILE          image-to-image from this picture: PNG, JPEG or WebP (EXIF rotation
                        applied; at most 256 MiB and 8192×8192 pixels)
  --strength S          image-to-image strength in (0, 1] (default 0.5); steps × S must be ≥ 1
  --guidance-scale G    classifier-free guidance (default 0: off, as SDXL-Turbo wants); above 1
                        the UNet also runs on the negative prompt (SDXL base: 5–7)
  --negative-prompt T   the negative prompt of guidance: once for all prompts, or once per
                        --prompt (default: zeros, or "" without force_zeros_for_empty_prompt)
  --scheduler S         euler or euler-a (default: the model's scheduler_config.json)
  --timestep-spacing S  leading, trailing or linspace (default: the model's)
  -o, --out OUT.png     output file (default out.png); a batch writes OUT-1.png, OUT-2.png, …
  --metadata all|none   the generation parameters in the PNG's text chunks (default all)
  --variant fp16|fp32   which weight files to read (default fp16 where present)
  --dtype f16|f32       compute precision (default f16 where the adapter has shader-f16)
  --weights q8          8-bit Linear and conv weights in the UNet and text encoders, quantized
                        on the GPU at load (a \`sdxl-turbo quantize\` folder is 8-bit anyway)
  --max-memory BYTES    GPU memory budget, e.g. 6GB, 6GiB, 512MiB: text encoders (and the UNet
                        while they run) released and the VAE decode tiled as needed; a budget no
                        plan fits is refused before loading, naming the plan
  --vae DIR|FILE        another SDXL VAE: a diffusers vae folder (config.json + weights) or one
                        .safetensors (diffusers or SGM naming; the model's VAE config); a config
                        with force_upcast false (the fp16-fix VAE) runs in f16
  --revision REV        a Hugging Face repo's branch, tag or commit (default main)
  --lora FILE[:SCALE]   merge a LoRA (kohya or diffusers/PEFT .safetensors) into the UNet and
                        text encoders at SCALE (default 1); repeatable. Only a trailing
                        :NUMBER is a scale, so C:\\loras\\x.safetensors is a path as it is
  --inputs F            safetensors with the random tensors to use instead of drawing them:
                        initial_latents, step{i}.noise, posterior_noise, add_noise_noise
  --save-tensors F      write final_latents, image, prompt_embeds, pooled_prompt_embeds (with
                        guidance also negative_prompt_embeds, negative_pooled_prompt_embeds)
  --verbose             adapter, precision, weight files, memory plan, per-stage times
  --profile             per-kernel GPU times (needs the adapter's timestamp-query)
  --no-tune             ignore the kernel variants \`sdxl-turbo tune\` stored for this GPU
  --tuning-dir DIR      where tune's tables are (default $SDXL_TURBO_TUNING_DIR, else
                        \${XDG_CACHE_HOME:-~/.cache}/sdxl-turbo/tuning)
  --subgroup-matrix     try the tensor-core matmul (chromium-experimental-subgroup-matrix):
                        used only if the adapter offers it and a start-up self-check passes;
                        --verbose says which (also SDXL_SUBGROUP_MATRIX=1)

serve options (and generate's model options: --config, --variant, --dtype, --revision, --lora,
--scheduler, --timestep-spacing, --no-tune, --tuning-dir, --verbose: a line per request):
  --host HOST           address to listen on (default 127.0.0.1); anything else serves other
                        machines, without authentication
  --port N              port (default 8188; 0: any free one, printed)
  --queue N             requests waiting behind the running one (default 8); more get 429
  --max-body BYTES      largest request body (default 67108864); larger gets 413
  POST /v1/images/generations {"prompt", "n", "size": "WxH", "response_format": "b64_json",
  "seed", "steps", "strength", "image" (base64), "negative_prompt", "guidance_scale"};
  GET /v1/live?size=WxH&seed=N: a live session as Server-Sent Events, POST /v1/live/ID
  {"prompt"} draws its next frame; GET /health. SIGINT/SIGTERM: stop after the running
  generation (twice: cancel it).

Environment: HF_TOKEN, HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE (as huggingface_hub);
SDXL_TURBO_TUNING_DIR (tune's tables).
Exit status: 0 done, 2 bad input (one line on stderr naming it), 1 any other failure.
`;

/** The flags that load the model, generate's and serve's (src/node/serve-command.ts). */
export const LOAD_OPTIONS = {
  model: { type: 'string', short: 'm' },
  config: { type: 'string' },
  scheduler: { type: 'string' },
  'timestep-spacing': { type: 'string' },
  variant: { type: 'string' },
  dtype: { type: 'string' },
  weights: { type: 'string' },
  'max-memory': { type: 'string' },
  vae: { type: 'string' },
  revision: { type: 'string' },
  lora: { type: 'string', multiple: true },
  verbose: { type: 'boolean' },
  profile: { type: 'boolean' },
  'no-tune': { type: 'boolean' },
  'tuning-dir': { type: 'string' },
  'subgroup-matrix': { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

const GENERATE_OPTIONS = {
  ...LOAD_OPTIONS,
  prompt: { type: 'string', short: 'p', multiple: true },
  steps: { type: 'string', short: 's' },
  seed: { type: 'string' },
  width: { type: 'string', short: 'W' },
  height: { type: 'string', short: 'H' },
  'num-images': { type: 'string' },
  image: { type: 'string' },
  strength: { type: 'string' },
  'guidance-scale': { type: 'string' },
  'negative-prompt': { type: 'string', multiple: true },
  out: { type: 'string', short: 'o' },
  metadata: { type: 'string' },
  inputs: { type: 'string' },
  'save-tensors': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

const TOKENIZE_OPTIONS = {
  model: { type: 'string', short: 'm' },
  config: { type: 'string' },
  prompt: { type: 'string', short: 'p' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** The flag of each library option, for the library's messages. */
const FLAGS: Record<string, string> = {
  model: '--model',
  config: '--config',
  prompt: '--prompt',
  steps: '--steps',
  seed: '--seed',
  width: '--width',
  height: '--height',
  imagesPerPrompt: '--num-images',
  image: '--image',
  strength: '--strength',
  guidanceScale: '--guidance-scale',
  negativePrompt: '--negative-prompt',
  scheduler: '--scheduler',
  timestepSpacing: '--timestep-spacing',
  inputs: '--inputs',
  loras: '--lora',
  variant: '--variant',
  dtype: '--dtype',
  weights: '--weights',
  maxMemory: '--max-memory',
  vae: '--vae',
};

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

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/** The values of `options`' flags as parse() gives them. */
export type Flags<O extends OptionsConfig> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>>['values'];

export function parse<O extends OptionsConfig>(options: O, args: string[]): Flags<O> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    // Node's messages name the option ("Unknown option '--foo'…"), some over several lines.
    usage(`${(e as Error).message.replace(/\s*\n\s*/g, ' ')} (see sdxl-turbo --help)`);
  }
}

/** A whole decimal number; "1.5", "1e3", "-2" and "" are refused by option name. */
export function integer(name: string, text: string | undefined): number | undefined {
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

/** OUT.png for one image, else OUT-1.png, OUT-2.png, … in batch order (prompt by prompt). */
function outPaths(out: string, count: number): string[] {
  if (count === 1) return [out];
  const stem = out.slice(0, -'.png'.length);
  return Array.from({ length: count }, (_, i) => `${stem}-${i + 1}${out.slice(stem.length)}`);
}

/** What loads the model, from LOAD_OPTIONS' flags. */
export interface LoadArgs {
  readonly model: string;
  readonly config: string | undefined;
  readonly variant: 'fp16' | 'fp32' | undefined;
  readonly dtype: 'f16' | 'f32' | undefined;
  readonly weights: 'q8' | undefined;
  readonly maxMemory: number | undefined;
  readonly vae: string | undefined;
  /** Checked by the library (loadPipeline's scheduler options). */
  readonly scheduler: string | undefined;
  readonly timestepSpacing: string | undefined;
  readonly revision: string | undefined;
  readonly loras: LoraOption[] | undefined;
  readonly verbose: boolean;
  readonly profile: boolean;
  /** Use the stored tuning table (not --no-tune). */
  readonly tune: boolean;
  readonly tuningDir: string | undefined;
  readonly subgroupMatrix: boolean | undefined;
}

/** LOAD_OPTIONS' flags as load options; the library checks the values. */
export function loadArgs(v: Flags<typeof LOAD_OPTIONS>): LoadArgs {
  return {
    model: required('--model', v.model),
    config: v.config,
    variant: oneOf('--variant', v.variant, ['fp16', 'fp32'] as const),
    dtype: oneOf('--dtype', v.dtype, ['f16', 'f32'] as const),
    weights: oneOf('--weights', v.weights, ['q8'] as const),
    maxMemory: v['max-memory'] === undefined ? undefined : parseByteSize(v['max-memory'], '--max-memory'),
    vae: v.vae,
    scheduler: v.scheduler,
    timestepSpacing: v['timestep-spacing'],
    revision: v.revision,
    loras: v.lora?.map(loraArg),
    verbose: v.verbose === true,
    profile: v.profile === true,
    tune: v['no-tune'] !== true,
    tuningDir: v['tuning-dir'],
    subgroupMatrix: v['subgroup-matrix'],
  };
}

/** Loads the model of `a`: `preflight` is the run loadPipeline checks and compiles for. */
export function openPipeline(a: LoadArgs, options: Pick<NodeLoadOptions, 'preflight' | 'onProgress' | 'signal' | 'onWarning'>): Promise<Pipeline> {
  const schedulerOptions = { scheduler: a.scheduler as SchedulerName | undefined, timestepSpacing: a.timestepSpacing as TimestepSpacing | undefined };
  const tuning = { tune: a.tune, ...(a.tuningDir !== undefined ? { tuningDir: a.tuningDir } : {}) };
  return loadPipeline(a.model, { config: a.config, variant: a.variant, dtype: a.dtype, weights: a.weights, maxMemory: a.maxMemory, vae: a.vae, ...schedulerOptions, revision: a.revision, loras: a.loras, profile: a.profile, ...tuning, subgroupMatrix: a.subgroupMatrix, ...options });
}

interface GenerateArgs extends LoadArgs {
  /** The generate() / imageToImage() options (image-to-image with `image`), also the preflight. */
  readonly call: Omit<ImageToImageOptions, 'image'> & { readonly image?: ImageToImageOptions['image'] };
  readonly out: string;
  readonly metadata: boolean;
  readonly inputsPath: string | undefined;
  readonly saveTensors: string | undefined;
}

/** The flags as library options, the --image and --inputs files read, the outputs' folders
 *  checked; the library checks the values (before it touches the model). */
async function generateArgs(v: ReturnType<typeof parse<typeof GENERATE_OPTIONS>>): Promise<GenerateArgs> {
  const load = loadArgs(v);
  const { model, loras } = load;
  const prompt = required('--prompt', v.prompt);
  // Exact over torch's whole range: a bigint past 2^53 − 1 (the library checks ≤ 2^64 − 1).
  const seedNumber = v.seed === '-1' ? -1 : integer('--seed', v.seed);
  const seed = seedNumber !== undefined && !Number.isSafeInteger(seedNumber) ? BigInt(v.seed!) : seedNumber;
  const out = v.out ?? 'out.png';
  if (!/\.png$/i.test(out)) usage(`--out must name a .png file, got "${out}"`);
  const image = v.image === undefined ? undefined : await readImage(v.image).catch((e: Error) => usage(`--image: ${e.message}`));
  const inputs = v.inputs === undefined ? undefined : await readRandomInputs(v.inputs);
  const call: GenerateArgs['call'] = {
      prompt,
      steps: integer('--steps', v.steps),
      seed,
      width: integer('--width', v.width),
      height: integer('--height', v.height),
      imagesPerPrompt: integer('--num-images', v['num-images']),
      image,
      strength: decimal('--strength', v.strength),
      guidanceScale: decimal('--guidance-scale', v['guidance-scale']),
      // One value is every prompt's (a string, as diffusers takes it); several are per prompt.
      negativePrompt: v['negative-prompt']?.length === 1 ? v['negative-prompt'][0] : v['negative-prompt'],
      inputs,
      returnTensors: v['save-tensors'] !== undefined,
  };
  // The options checked now (the library checks them again): the batch names every output.
  const { batch } = withFlags(() => resolveGenerate(call, image !== undefined), v.inputs);
  await checkOutputs(
    [...outPaths(out, batch).map((path) => ({ option: '--out', path })), ...(v['save-tensors'] !== undefined ? [{ option: '--save-tensors', path: v['save-tensors'] }] : [])],
    await localInputs([
      { option: '--image', path: v.image },
      { option: '--inputs', path: v.inputs },
      { option: '--model', path: model },
      { option: '--config', path: v.config },
      { option: '--vae', path: v.vae },
      ...(loras ?? []).map((l) => ({ option: '--lora', path: typeof l.source === 'string' ? l.source : undefined })),
    ]),
  );
  return {
    ...load,
    call,
    out,
    metadata: oneOf('--metadata', v.metadata, ['all', 'none'] as const) !== 'none',
    inputsPath: v.inputs,
    saveTensors: v['save-tensors'],
  };
}

/** The inputs that are local files (a --model or --lora may also be a URL or a hub id). */
async function localInputs(inputs: ReadonlyArray<{ option: string; path: string | undefined }>): Promise<NamedPath[]> {
  const named = inputs.filter((i): i is NamedPath => i.path !== undefined && !/^https?:\/\//i.test(i.path));
  const files = await Promise.all(named.map(async (i) => ((await stat(i.path).catch(() => null))?.isFile() ? i : null)));
  return files.filter((i): i is NamedPath => i !== null);
}

/** The library names its options; the user typed flags: a UsageError's option as its flag. */
export function flagError(e: unknown, inputsPath: string | undefined): unknown {
  if (e instanceof UsageError && e.option !== undefined && e.message.startsWith(e.option)) {
    const flag = e.option === 'inputs' && inputsPath !== undefined ? `--inputs ${inputsPath}` : FLAGS[e.option];
    if (flag) return new UsageError(flag + e.message.slice(e.option.length), { cause: e });
  }
  return e;
}

function withFlags<T>(work: () => T, inputsPath: string | undefined): T {
  try {
    return work();
  } catch (e) {
    throw flagError(e, inputsPath);
  }
}

/**
 * `--lora FILE[:SCALE]`: the scale is a trailing `:NUMBER` only, so a path with a drive letter
 * (`C:\x.safetensors`) or a URL stays whole; a file whose name ends in `:NUMBER` needs `:1` after it.
 */
export function loraArg(arg: string): LoraOption {
  const m = /^(.+):([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)$/i.exec(arg);
  if (arg === '') usage(`--lora needs a file, got "${arg}"`);
  return m ? { source: m[1]!, scale: Number(m[2]) } : { source: arg };
}

/** `--seed -1`: parseArgs takes a value that starts with "-" only as --seed=-1. */
function negativeSeed(argv: string[]): string[] {
  return argv.flatMap((arg, i) => (arg === '--seed' && /^-\d+$/.test(argv[i + 1] ?? '') ? [] : argv[i - 1] === '--seed' && /^-\d+$/.test(arg) ? [`--seed=${arg}`] : [arg]));
}

async function generate(argv: string[], io: CliIo): Promise<void> {
  const v = parse(GENERATE_OPTIONS, negativeSeed(argv));
  if (v.help) return io.out(HELP);
  const a = await generateArgs(v);
  const progress = new ProgressReporter(io.progress);
  const onProgress = progress.update.bind(progress);
  let pipeline: Pipeline | null = null;
  try {
    pipeline = await openPipeline(a, { preflight: a.call, onProgress, onWarning: (m) => io.err(`sdxl-turbo: warning: ${m}`) });
    progress.done();
    // Per-kernel times of the generation only, not of the weight conversions while loading.
    await pipeline.kernelTimings();
    pipeline.gpu.profiler?.reset();
    if (a.verbose) for (const line of pipeline.describe()) io.out(line);
    const { image } = a.call;
    const result = image ? await pipeline.imageToImage({ ...a.call, image, onProgress }) : await pipeline.generate({ ...a.call, onProgress });
    progress.done();
    const paths = outPaths(a.out, result.images.length);
    // All or nothing: every file to a temporary one beside it, then renamed into place.
    const files = await Promise.all(result.images.map(async (im, i) => ({ path: paths[i]!, data: await im.png({ metadata: a.metadata }) })));
    if (a.saveTensors !== undefined) files.push({ path: a.saveTensors, data: encodeTensors(result.tensors!) });
    await writeFilesAtomic(files, { describe: (path) => (path === a.saveTensors ? `--save-tensors ${path}` : path) });
    io.out(`wrote ${[...paths, ...(a.saveTensors !== undefined ? [a.saveTensors] : [])].join(', ')} (seed ${result.seed})`);
    if (a.verbose) {
      for (const [stage, ms] of Object.entries(result.timings) as Array<[Stage, number]>) io.out(`${stage.padEnd(16)}${ms.toFixed(0).padStart(8)} ms`);
    }
    if (a.profile) {
      const { gpu } = pipeline;
      if (!gpu.profiler) io.out(`profile: ${gpu.adapterName} has no timestamp-query, so no per-kernel GPU times`);
      else for (const k of await pipeline.kernelTimings()) io.out(`${k.kernel.padEnd(56)}${String(k.calls).padStart(6)}×${k.totalMs.toFixed(2).padStart(11)} ms`);
    }
  } catch (e) {
    throw flagError(e, a.inputsPath);
  } finally {
    progress.done();
    await pipeline?.dispose();
  }
}

async function tokenize(argv: string[], io: CliIo): Promise<void> {
  const v = parse(TOKENIZE_OPTIONS, argv);
  if (v.help) return io.out(HELP);
  const model = required('--model', v.model);
  const prompt = required('--prompt', v.prompt);
  const fs = await tokenizerFiles(model, v.config).catch((e: unknown) => {
    throw e instanceof UsageError && e.option !== undefined ? new UsageError(`--${e.message}`, { cause: e }) : e;
  });
  const read = async (path: string): Promise<string> => (await fs.readText(path)) ?? usage(`${fs.description}/${path}: missing`);
  const [tokenizer, tokenizer2] = await asUsage(loadTokenizers(read, fs.description));
  io.out(JSON.stringify({ tokenizer: [...tokenizer.encode(prompt)], tokenizer_2: [...tokenizer2.encode(prompt)] }));
}

/** The package's version, from the package.json beside dist/ (or src/). */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** Runs one command line (without `node` and the script); returns the exit status. */
export async function main(argv: string[], io: CliIo = PROCESS_IO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'generate') await generate(rest, io);
    else if (command === 'tokenize') await tokenize(rest, io);
    else if (command === 'serve') await serve(rest, io);
    else if (command === 'quantize') await quantizeCommand(rest, io);
    else if (command === 'tune') await tuneCommand(rest, io);
    else if (command === undefined || command === '--help' || command === '-h' || command === 'help') io.out(HELP);
    else if (command === '--version' || command === '-v') io.out(version());
    else usage(`unknown command "${command}" (expected generate, tokenize, quantize, tune or serve; see sdxl-turbo --help)`);
    return 0;
  } catch (e) {
    // Escaped again: a failure outside the library's classes (a bug, a runtime error) may quote anything.
    const message = escapeControls((e as Error).message ?? String(e));
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
