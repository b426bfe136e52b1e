// The model a benchmark runs (bench-pipeline, bench-live): --model's files (a folder, a Hugging
// Face repo id, a URL or a single file) or --synthetic's real-size weights made while loading.

import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { builtinSdxlFs } from '../src/io/builtin-config.js';
import { type ModelComponent, ModelFolder, type ModelFs } from '../src/io/model-folder.js';
import { nodeModelFs } from '../src/io/node-file.js';
import { openSingleFile } from '../src/io/single-file.js';
import { SyntheticSource } from '../src/io/synthetic.js';
import { SyntheticGpuSource } from '../src/io/synthetic-gpu.js';
import { TimedSource } from '../src/io/timed-source.js';
import type { OpenedModel as LoadedSource } from '../src/load.js';
import { openModel } from '../src/node/model-source.js';
import { ProgressReporter } from '../src/node/progress.js';

export const LAYOUT = 'test/fixtures/sdxl-turbo-layout';

/** A bad command-line option of a bench tool: printed as one line, exit 2. */
export class BadOption extends Error {}

/** A bench tool's options from `argv`, or the exit code when there is nothing to run: the usage
 *  printed for --help (0), a bad option on one line and the usage (2). */
export function parseToolOptions<T>(tool: string, usage: string, parse: (argv: string[]) => T | null, argv: string[]): T | number {
  let options: T | null;
  try {
    options = parse(argv);
  } catch (e) {
    if (!(e instanceof BadOption)) throw e;
    console.error(`${tool}: ${e.message}\n${usage}`);
    return 2;
  }
  if (options === null) console.log(usage);
  return options ?? 0;
}

/** --NAME as a whole number ≥ min. */
export function wholeOption(name: string, text: string, min: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min) throw new BadOption(`--${name} must be a whole number ≥ ${min}, got "${text}"`);
  return Number(text);
}

/** --NAME as an image side: a multiple of 8. */
export function sideOption(name: string, text: string): number {
  const v = wholeOption(name, text, 8);
  if (v % 8 !== 0) throw new BadOption(`--${name} must be a multiple of 8, got ${v}`);
  return v;
}

/** --NAME as one of `allowed` (or absent). */
export function oneOf<T extends string>(name: string, text: string | undefined, allowed: readonly T[]): T | undefined {
  if (text !== undefined && !(allowed as readonly string[]).includes(text)) throw new BadOption(`--${name} must be one of ${allowed.join(', ')}, got "${text}"`);
  return text as T | undefined;
}

/** The options of every model benchmark (bench-pipeline, bench-live), for parseArgs. */
export const MODEL_OPTIONS = {
  model: { type: 'string' },
  synthetic: { type: 'boolean', default: false },
  width: { type: 'string', default: '512' },
  height: { type: 'string', default: '512' },
  steps: { type: 'string', default: '1' },
  dtype: { type: 'string' },
  variant: { type: 'string' },
  seed: { type: 'string', default: '0' },
  json: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

type ToolOptions = NonNullable<ParseArgsConfig['options']>;
type ToolArgs<O extends ToolOptions> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>>['values'];

/** `argv` by `options` (MODEL_OPTIONS and a tool's own), strictly: anything else is a BadOption. */
export function parseToolArgs<const O extends ToolOptions>(argv: string[], options: O): ToolArgs<O> {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new BadOption((e as Error).message.split('\n')[0]);
  }
}

/** MODEL_OPTIONS' values, checked: exactly one of --model and --synthetic, --variant only with --model. */
export function modelOptions(values: {
  readonly model?: string;
  readonly synthetic: boolean;
  readonly width: string;
  readonly height: string;
  readonly steps: string;
  readonly dtype?: string;
  readonly variant?: string;
  readonly seed: string;
  readonly json?: string;
}) {
  if ((values.model === undefined) === !values.synthetic) throw new BadOption('give exactly one of --model and --synthetic');
  if (values.synthetic && values.variant !== undefined) throw new BadOption('--variant applies to --model only');
  return {
    model: values.model ?? null,
    width: sideOption('width', values.width),
    height: sideOption('height', values.height),
    steps: wholeOption('steps', values.steps, 1),
    dtype: oneOf('dtype', values.dtype, ['f16', 'f32'] as const),
    variant: oneOf('variant', values.variant, ['fp16', 'fp32'] as const),
    seed: wholeOption('seed', values.seed, 0),
    json: values.json ?? null,
  };
}
const TOKENIZERS = 'test/fixtures/tiny-sdxl'; // the real CLIP vocabulary and merges
export const COMPONENTS: ModelComponent[] = ['text_encoder', 'text_encoder_2', 'unet', 'vae'];

/** Which model: `model` (null: synthetic weights of `layout`'s architecture). */
export interface ModelChoice {
  readonly model: string | null;
  /** --synthetic: the folder of configs and weights-manifest.json. */
  readonly layout: string;
  readonly variant: 'fp16' | 'fp32' | undefined;
  /** --synthetic weights generated on the CPU and uploaded (else made on the GPU). */
  readonly cpuSynthetic: boolean;
}

/** The real configs (sdxl-turbo-layout has no vocabulary: the tiny fixture's tokenizers share CLIP's). */
export function syntheticFs(layoutDir: string): ModelFs {
  const layout = nodeModelFs(layoutDir);
  const tokenizers = nodeModelFs(TOKENIZERS);
  return {
    description: `${layoutDir} (synthetic weights)`,
    open: async () => null, // no files: every weight comes from SyntheticSource
    readText: async (path) => (await layout.readText(path)) ?? (path.startsWith('tokenizer') ? tokenizers.readText(path) : null),
  };
}

export interface OpenedModel {
  readonly folder: ModelFolder;
  readonly description: string;
  /** Seconds spent generating synthetic weights during load (null for files). */
  readonly generateSeconds: () => number | null;
}

/** --model's files (a repo id is downloaded first, outside the load time). */
export async function modelFs(options: ModelChoice): Promise<ModelFs | LoadedSource> {
  if (options.model === null) return syntheticFs(options.layout);
  const progress = new ProgressReporter(process.stderr);
  try {
    return await openModel(options.model, { variant: options.variant, onDownload: (e) => progress.update(e) });
  } finally {
    progress.done();
  }
}

export async function openModelFolder(options: ModelChoice, fs: ModelFs | LoadedSource): Promise<OpenedModel> {
  if ('checkpoint' in fs) return { folder: await openSingleFile(fs.checkpoint, builtinSdxlFs()), description: options.model!, generateSeconds: () => null };
  if (options.model !== null) {
    const folder = await ModelFolder.open(fs, { variant: options.variant });
    return { folder, description: options.model, generateSeconds: () => null };
  }
  const manifest: unknown = JSON.parse(await readFile(`${options.layout}/weights-manifest.json`, 'utf8'));
  const architecture = options.layout === LAYOUT ? 'real SDXL-Turbo architecture' : `${options.layout} architecture (--layout)`;
  if (!options.cpuSynthetic) {
    // Made on the GPU where they land: no generating or uploading to tell apart.
    const folder = await ModelFolder.open(fs, { weights: Object.fromEntries(COMPONENTS.map((c) => [c, SyntheticGpuSource.fromManifest(manifest, c)])) });
    return { folder, description: `${architecture}, synthetic weights generated on the GPU (--synthetic)`, generateSeconds: () => null };
  }
  // Timed: the load time is then split into generating and uploading.
  const sources = COMPONENTS.map((c) => [c, new TimedSource(SyntheticSource.fromManifest(manifest, c))] as const);
  const folder = await ModelFolder.open(fs, { weights: Object.fromEntries(sources) });
  return {
    folder,
    description: `${architecture}, synthetic weights generated on the CPU (--synthetic --cpu-synthetic)`,
    generateSeconds: () => sources.reduce((s, [, source]) => s + source.readSeconds, 0),
  };
}
