// A diffusers pipeline folder (model_index.json, one sub-folder per component) read through a
// small file-system abstraction, so one code path serves a Node directory (nodeModelFs in
// io/node-file.ts), files picked in a browser (filesModelFs) and a base URL (urlModelFs).
// Everything is checked when the folder is opened — pipeline class, component classes,
// configs, the weight file of each model and its safetensors header — so a wrong or
// incomplete folder fails before any weight is read.

import { excerpt } from '../errors.js';
import { blobReader } from './blob-reader.js';
import type { ByteReader } from './byte-reader.js';
import { SafetensorsFile } from './safetensors.js';
import { isQuantized, openQ8Source, refuseInt8 } from './q8-source.js';
import { openShardedSafetensors } from './sharded.js';
import type { TensorSource } from './tensor-source.js';
import { fetchText, openUrlReaderIfExists } from './url-reader.js';

export interface ModelFs {
  /** The folder, for messages: a path or a base URL. */
  readonly description: string;
  /** A file by its '/'-separated path inside the folder ('unet/config.json'); null if absent. */
  open(path: string): Promise<ByteReader | null>;
  readText(path: string): Promise<string | null>;
}

/** Largest config, shard index or tokenizer file read whole (SDXL's largest, vocab.json, is
 *  1.06 MB): a bigger one is not such a file, and is refused before it is read. */
export const MAX_TEXT_FILE_BYTES = 16 << 20;

/** Which weight files to read: `*.fp16.safetensors` or the plain (float32) ones. */
export type WeightVariant = 'fp16' | 'fp32';
export type ModelComponent = 'text_encoder' | 'text_encoder_2' | 'unet' | 'vae';

const PIPELINE_CLASS = 'StableDiffusionXLPipeline';
/** The classes we implement and the base name of their weight files (transformers vs diffusers). */
const MODELS: Record<ModelComponent, { readonly className: string; readonly weights: string }> = {
  text_encoder: { className: 'CLIPTextModel', weights: 'model' },
  text_encoder_2: { className: 'CLIPTextModelWithProjection', weights: 'model' },
  unet: { className: 'UNet2DConditionModel', weights: 'diffusion_pytorch_model' },
  vae: { className: 'AutoencoderKL', weights: 'diffusion_pytorch_model' },
};
const TOKENIZER_CLASSES = ['CLIPTokenizer', 'CLIPTokenizerFast'];
const REQUIRED = ['text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'unet', 'vae', 'scheduler'];

export interface ComponentSpec {
  /** "diffusers" or "transformers". */
  readonly library: string;
  readonly className: string;
}

interface OpenedWeights {
  readonly path: string;
  readonly source: TensorSource;
  /** The config declares 8-bit weights (docs/Q8.md). */
  readonly quantized: boolean;
}

export interface ModelFolderOptions {
  /** Default: per component, fp16 when the folder has it, else fp32. */
  readonly variant?: WeightVariant;
  /** Sources used instead of the folder's weight files (e.g. the synthetic real-size weights,
   *  which have no files); the folder then needs no weight file for those components. */
  readonly weights?: Partial<Record<ModelComponent, TensorSource>>;
}

export class ModelFolder {
  private constructor(
    readonly fs: ModelFs,
    /** model_index.json as parsed (pipeline options such as force_zeros_for_empty_prompt). */
    readonly index: Readonly<Record<string, unknown>>,
    /** Every component model_index.json names (null entries such as feature_extractor left out). */
    readonly components: ReadonlyMap<string, ComponentSpec>,
    private readonly configs: ReadonlyMap<string, Readonly<Record<string, unknown>>>,
    private readonly opened: ReadonlyMap<ModelComponent, OpenedWeights>,
  ) {}

  static async open(fs: ModelFs, options: ModelFolderOptions = {}): Promise<ModelFolder> {
    const index = parseObject(await requireText(fs, 'model_index.json', 'not a diffusers pipeline folder'), where(fs, 'model_index.json'));
    const components = readComponents(fs, index);
    const configs = new Map<string, Readonly<Record<string, unknown>>>();
    for (const name of Object.keys(MODELS)) {
      configs.set(name, parseObject(await requireText(fs, `${name}/config.json`, `${name}'s config`), where(fs, `${name}/config.json`)));
    }
    const schedulerConfig = 'scheduler/scheduler_config.json';
    configs.set('scheduler', parseObject(await requireText(fs, schedulerConfig, "the scheduler's config"), where(fs, schedulerConfig)));

    const opened = new Map<ModelComponent, OpenedWeights>();
    try {
      for (const name of Object.keys(MODELS) as ModelComponent[]) {
        const given = options.weights?.[name];
        const quantized = isQuantized(configs.get(name)!, where(fs, `${name}/config.json`));
        opened.set(name, given ? { path: given.description, source: given, quantized } : await openWeights(fs, name, options.variant, quantized));
      }
    } catch (e) {
      await Promise.all([...opened.values()].map((w) => w.source.close?.()));
      throw e;
    }
    return new ModelFolder(fs, index, components, configs, opened);
  }

  get description(): string {
    return this.fs.description;
  }

  /** A model's config.json, or the scheduler's scheduler_config.json, as parsed. */
  config(component: ModelComponent | 'scheduler'): Readonly<Record<string, unknown>> {
    return this.configs.get(component)!;
  }

  /** The weights of a model, from the file chosen for the variant. */
  weights(component: ModelComponent): TensorSource {
    return this.opened.get(component)!.source;
  }

  /** Whether the component's weights are 8-bit (its config.json has "quantization"). */
  quantized(component: ModelComponent): boolean {
    return this.opened.get(component)!.quantized;
  }

  /** The weight file chosen, e.g. 'unet/diffusion_pytorch_model.fp16.safetensors' (a given
   *  source: its description). */
  weightFile(component: ModelComponent): string {
    return this.opened.get(component)!.path;
  }

  /** Any text file of the folder (tokenizer vocab and merges); an error naming it if absent. */
  readText(path: string): Promise<string> {
    return requireText(this.fs, path, 'required file');
  }

  async close(): Promise<void> {
    await Promise.all([...this.opened.values()].map((w) => w.source.close?.()));
  }
}

function where(fs: ModelFs, path: string): string {
  return `${fs.description.replace(/\/+$/, '')}/${path}`;
}

async function requireText(fs: ModelFs, path: string, what: string): Promise<string> {
  const text = await fs.readText(path);
  if (text === null) throw new Error(`${where(fs, path)}: missing (${what})`);
  return text;
}

function parseObject(text: string, description: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`${description}: invalid JSON (${excerpt((e as Error).message, 100)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${description}: not a JSON object`);
  return value as Record<string, unknown>;
}

function readComponents(fs: ModelFs, index: Record<string, unknown>): Map<string, ComponentSpec> {
  const file = where(fs, 'model_index.json');
  if (index._class_name !== PIPELINE_CLASS) {
    throw new Error(`${file}: the pipeline is ${excerpt(JSON.stringify(index._class_name) ?? 'absent')}; only ${PIPELINE_CLASS} (SDXL-Turbo's) is supported`);
  }
  const components = new Map<string, ComponentSpec>();
  for (const [name, value] of Object.entries(index)) {
    // Non-array entries are pipeline options; [null, null] is an absent optional component.
    if (name.startsWith('_') || !Array.isArray(value)) continue;
    if (value.length === 2 && value[0] === null && value[1] === null) continue;
    if (value.length !== 2 || typeof value[0] !== 'string' || typeof value[1] !== 'string') {
      throw new Error(`${file}: component ${excerpt(name)} is ${excerpt(JSON.stringify(value))}, expected [library, class]`);
    }
    components.set(name, { library: value[0], className: value[1] });
  }
  const missing = REQUIRED.filter((n) => !components.has(n));
  if (missing.length > 0) throw new Error(`${file}: missing component(s) ${missing.join(', ')}`);
  for (const [name, spec] of components) {
    const expected = name in MODELS ? [MODELS[name as ModelComponent].className] : name.startsWith('tokenizer') ? TOKENIZER_CLASSES : null;
    if (expected && !expected.includes(spec.className)) {
      throw new Error(`${file}: ${name} is ${spec.className}; expected ${expected.join(' or ')}`);
    }
  }
  return components;
}

/** The four networks of an SDXL folder, in load order. */
export const MODEL_COMPONENTS = Object.keys(MODELS) as ModelComponent[];

/** The tokenizer files each of tokenizer/ and tokenizer_2/ must hold. */
export const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'];

/** "org/name", as the Hugging Face Hub names repositories. */
export function isRepoId(spec: string): boolean {
  return /^[\w-][\w.-]*\/[\w.-]+$/.test(spec);
}

/** "org/name/FILE.safetensors" (the file may be in a folder of the repo): a single-file
 *  checkpoint on the Hugging Face Hub. */
export function parseHubFile(spec: string): { readonly repoId: string; readonly path: string } | null {
  const m = /^([\w-][\w.-]*\/[\w.-]+)\/((?:[\w.-]+\/)*[\w.-]+\.safetensors)$/.exec(spec);
  return m ? { repoId: m[1]!, path: m[2]! } : null;
}

/** The weight files to try, in order: a single file, then a shard index, per variant. */
export function weightCandidates(component: ModelComponent, variant: WeightVariant | undefined): string[] {
  const base = `${component}/${MODELS[component].weights}`;
  const fp16 = [`${base}.fp16.safetensors`, `${base}.safetensors.index.fp16.json`];
  const fp32 = [`${base}.safetensors`, `${base}.safetensors.index.json`];
  return variant === 'fp16' ? fp16 : variant === 'fp32' ? fp32 : [...fp16, ...fp32];
}

async function openWeights(fs: ModelFs, component: ModelComponent, variant: WeightVariant | undefined, quantized: boolean): Promise<OpenedWeights> {
  // An 8-bit component has one file (sdxl-turbo quantize names it without a variant): any variant finds it.
  const tried = weightCandidates(component, quantized ? undefined : variant);
  const config = where(fs, `${component}/config.json`);
  for (const path of tried) {
    if (path.endsWith('.json')) {
      const text = await fs.readText(path);
      if (text === null) continue;
      if (quantized) throw new Error(`${where(fs, path)}: 8-bit weights (${config} has "quantization") must be one safetensors file, not shards`);
      const source = await openShardedSafetensors(text, where(fs, path), async (file) => {
        const shard = await fs.open(`${component}/${file}`);
        if (!shard) throw new Error(`${where(fs, `${component}/${file}`)}: missing (a shard named by ${path})`);
        return shard;
      });
      return { path, source, quantized };
    }
    const reader = await fs.open(path);
    if (!reader) continue;
    const file = await SafetensorsFile.open(reader);
    try {
      if (!quantized) refuseInt8(file, config);
      return { path, source: quantized ? openQ8Source(file) : file, quantized };
    } catch (e) {
      await file.close();
      throw e;
    }
  }
  throw new Error(`${fs.description}: no ${variant ?? 'fp16 or fp32'} weights for ${component} (tried ${tried.join(', ')})`);
}

/**
 * Files picked in a browser (<input type=file webkitdirectory>, drag and drop), keyed by their
 * path inside the model folder ('unet/config.json': webkitRelativePath without its first part).
 */
export function filesModelFs(files: ReadonlyMap<string, Blob>, description = 'selected folder'): ModelFs {
  return {
    description,
    open: async (path) => {
      const file = files.get(path);
      return file ? blobReader(file, `${description}/${path}`) : null;
    },
    readText: async (path) => {
      const file = files.get(path);
      if (file && file.size > MAX_TEXT_FILE_BYTES) throw new Error(`${description}/${path}: ${file.size} bytes, over the ${MAX_TEXT_FILE_BYTES}-byte limit for a config or tokenizer file`);
      return (await file?.text()) ?? null;
    },
  };
}

/** A model folder served over HTTP(S), e.g. https://huggingface.co/stabilityai/sdxl-turbo/resolve/main/. */
export function urlModelFs(baseUrl: string): ModelFs {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const url = (path: string): string => new URL(path, base).href;
  return {
    description: baseUrl,
    open: (path) => openUrlReaderIfExists(url(path)),
    readText: (path) => fetchText(url(path)),
  };
}
