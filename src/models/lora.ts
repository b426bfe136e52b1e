// LoRA files merged into the weights at load: W' = W + scale · (alpha / rank) · up · down, in f32
// on the GPU before the cast to the compute dtype. Two namings are read:
// - kohya-ss: `lora_unet_<module>`, `lora_te1_<module>`, `lora_te2_<module>` with the module's dots
//   written as underscores, `.lora_down.weight` (rank, in), `.lora_up.weight` (out, rank) and a
//   scalar `.alpha`. UNet modules are SGM names (`input_blocks_4_1_…`) in SDXL files, diffusers
//   names in older ones: both are resolved by matching against the model's declared weights,
//   never by guessing where the dots were.
// - diffusers / PEFT: `unet.<module>.lora_A.weight` (rank, in), `.lora_B.weight` (out, rank),
//   `text_encoder.…`, `text_encoder_2.…` (or diffusers' older `.lora.down/up.weight`,
//   `.lora_linear_layer.down/up.weight`); no alpha means alpha = rank.
// Only Linear layers are supported; a file with conv LoRA (LoCon, LoHa, LoKr) keys, unknown keys
// or keys that match no weight of the model is refused with one error listing them.

import { NetworkError, usage } from '../errors.js';
import { f16BitsToF32 } from '../f16.js';
import type { Gpu } from '../gpu/runtime.js';
import { blobReader } from '../io/blob-reader.js';
import type { ByteReader } from '../io/byte-reader.js';
import { SafetensorsFile } from '../io/safetensors.js';
import type { HostTensor } from '../io/tensor-source.js';
import { openUrlReader } from '../io/url-reader.js';
import { axpby } from '../ops/binary.js';
import { uploadAs } from '../ops/cast.js';
import { matmul } from '../ops/matmul.js';
import { formatShape, type Tensor, tidy } from '../tensor.js';
import type { WeightMerge } from './weights.js';

/** One LoRA to merge: a file (Node: a path or URL; browser: a Blob or URL) and its multiplier. */
export interface LoraOption {
  readonly source: string | Blob;
  /** Multiplier of the update (default 1; 0 leaves the weights as they are). */
  readonly scale?: number;
}

/** The networks a LoRA may change. */
export type LoraTarget = 'text_encoder' | 'text_encoder_2' | 'unet';
export const LORA_TARGETS: readonly LoraTarget[] = ['text_encoder', 'text_encoder_2', 'unet'];

/** Opens a LoRA file's bytes; the platform's (Node adds file paths). */
export type LoraOpener = (source: string | Blob) => Promise<ByteReader>;

/** The opener without a file system: Blobs and http(s) URLs. */
export const openLoraSource: LoraOpener = async (source) => {
  if (typeof source !== 'string') return blobReader(source);
  if (/^https?:\/\//i.test(source)) return openUrlReader(source);
  usage(`loras: ${source}: not a URL (https://…); file paths need the Node entry's loadPipeline`, 'loras');
};

/** What a LoRA is matched against: each target's declared weights (name → shape), and for
 *  the UNet another name of a module (the SGM name kohya files use), when one is known. */
export interface LoraModel {
  readonly weights: Readonly<Record<LoraTarget, ReadonlyMap<string, readonly number[]>>>;
  readonly unetAlias?: (module: string) => string | null;
}

/** One low-rank update of one weight. */
interface Patch {
  readonly file: SafetensorsFile;
  readonly down: string;
  readonly up: string;
  readonly rank: number;
  /** scale · alpha / rank. */
  readonly factor: number;
}

/** Opened LoRA files matched to the model: which weights each changes and how. */
export class Loras {
  static readonly none = new Loras([], [], new Map());

  private constructor(
    private readonly files: readonly SafetensorsFile[],
    /** Per file, for --verbose: its scale and how many weights it changes. */
    private readonly summary: readonly string[],
    private readonly patches: ReadonlyMap<LoraTarget, ReadonlyMap<string, readonly Patch[]>>,
  ) {}

  /**
   * Opens and checks every LoRA before anything is uploaded: a bad source, scale or file is a
   * UsageError (option `loras`) naming the file; every file opened is closed on failure.
   */
  static async open(options: ReadonlyArray<LoraOption> | undefined, model: LoraModel, opener: LoraOpener): Promise<Loras> {
    if (options === undefined) return Loras.none;
    if (!Array.isArray(options)) usage(`loras must be an array of { source, scale }, got ${JSON.stringify(options)}`, 'loras');
    const files: SafetensorsFile[] = [];
    const summary: string[] = [];
    const patches = new Map<LoraTarget, Map<string, Patch[]>>(LORA_TARGETS.map((t) => [t, new Map()]));
    try {
      for (const [i, option] of options.entries()) {
        const { source, scale = 1 } = (option ?? {}) as Partial<LoraOption>;
        if (typeof source !== 'string' && !(typeof Blob !== 'undefined' && source instanceof Blob)) {
          usage(`loras[${i}].source must be a path, URL or Blob, got ${JSON.stringify(source)}`, 'loras');
        }
        if (typeof scale !== 'number' || !Number.isFinite(scale)) usage(`loras[${i}].scale must be a finite number, got ${JSON.stringify(scale)}`, 'loras');
        const reader = await opener(source).catch((e: unknown) => {
          // A server or connection failure stays a NetworkError; anything else is the source's fault.
          if (e instanceof NetworkError) throw e;
          usage(`loras: ${(e as Error).message}`, 'loras');
        });
        const file = await SafetensorsFile.open(reader).catch(async (e: unknown) => {
          await reader.close?.();
          usage(`loras: ${(e as Error).message}`, 'loras');
        });
        files.push(file);
        const matched = await matchFile(file, scale, model);
        summary.push(`lora: ${file.description} × ${scale} (${[...matched.values()].reduce((n, m) => n + m.size, 0)} weights)`);
        for (const [target, byWeight] of matched) {
          for (const [weight, patch] of byWeight) {
            const list = patches.get(target)!;
            list.set(weight, [...(list.get(weight) ?? []), patch]);
          }
        }
      }
    } catch (e) {
      await Promise.all(files.map((f) => f.close()));
      throw e;
    }
    return new Loras(files, summary, patches);
  }

  /** One line per LoRA: file, scale, weights changed. */
  describe(): string[] {
    return [...this.summary];
  }

  /** The weights of `target` these LoRAs change. */
  names(target: LoraTarget): Set<string> {
    return new Set(this.patches.get(target)?.keys());
  }

  /** Per changed weight of `target`, the merge that adds every LoRA's update to it. */
  merges(gpu: Gpu, target: LoraTarget): Map<string, WeightMerge> {
    const out = new Map<string, WeightMerge>();
    for (const [name, list] of this.patches.get(target) ?? []) out.set(name, (weight) => merge(gpu, name, weight, list));
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

/** weight (f32, out × in) + Σ factor · up · down, in f32; `weight` itself is left as it is. */
async function merge(gpu: Gpu, name: string, weight: Tensor, patches: readonly Patch[]): Promise<Tensor> {
  const [out, inner] = weight.shape as [number, number];
  const factors = await Promise.all(patches.map(async (p) => ({ p, down: await p.file.read(p.down), up: await p.file.read(p.up) })));
  return tidy(() =>
    factors.reduce((merged, { p, down, up }) => {
      const label = `lora ${p.file.description}: ${name}`;
      const d = uploadAs(gpu, down.data, down.format, [1, p.rank, inner], 'f32', { label }); // (1, rank, in)
      const u = uploadAs(gpu, up.data, up.format, [1, out, p.rank], 'f32', { label }); // (1, out, rank)
      return axpby(1, merged, p.factor, matmul(u, d).reshape(weight.shape)); // (out, in)
    }, weight),
  );
}

type Part = 'down' | 'up' | 'alpha';
const KOHYA = /^lora_(unet|te1|te2)_([^.]+)\.(lora_down\.weight|lora_up\.weight|alpha)$/;
const PEFT = /^(unet|text_encoder|text_encoder_2)\.(.+)\.(lora_A\.weight|lora_B\.weight|(?:lora|lora_linear_layer)\.(?:down|up)\.weight|alpha)$/;
const KOHYA_TARGET: Record<string, LoraTarget> = { unet: 'unet', te1: 'text_encoder', te2: 'text_encoder_2' };
const PART: Record<string, Part> = {
  'lora_down.weight': 'down',
  'lora_up.weight': 'up',
  'lora_A.weight': 'down',
  'lora_B.weight': 'up',
  // diffusers' own older spellings (its kohya converter writes lora_linear_layer).
  'lora.down.weight': 'down',
  'lora.up.weight': 'up',
  'lora_linear_layer.down.weight': 'down',
  'lora_linear_layer.up.weight': 'up',
  alpha: 'alpha',
};
/** Keys of the conv and other non-Linear LoRA kinds (LoCon's mid, LoHa, LoKr, DoRA). */
const UNSUPPORTED_KIND = /\.(lora_mid\.weight|hada_\w+|lokr_\w+|dora_scale)$/;
const LIST = 8;

/** Every module of `target` by the names a LoRA key may give it; ambiguous spellings are dropped. */
function moduleNames(model: LoraModel, target: LoraTarget, kohya: boolean): Map<string, string> {
  const byName = new Map<string, string | null>();
  const add = (key: string, module: string): void => {
    const seen = byName.get(key);
    byName.set(key, seen === undefined || seen === module ? module : null);
  };
  for (const name of model.weights[target].keys()) {
    if (!name.endsWith('.weight')) continue;
    const module = name.slice(0, -'.weight'.length);
    const spellings = [module];
    const alias = target === 'unet' ? model.unetAlias?.(module) : null;
    if (alias) spellings.push(alias);
    for (const s of spellings) add(kohya ? s.replaceAll('.', '_') : s, module);
  }
  return new Map([...byName].filter((e): e is [string, string] => e[1] !== null));
}

/** The file's keys matched to the model's weights, or one UsageError listing every misfit. */
async function matchFile(file: SafetensorsFile, scale: number, model: LoraModel): Promise<Map<LoraTarget, Map<string, Patch>>> {
  const where = file.description;
  const problems = new Map<string, string[]>();
  const problem = (kind: string, detail: string): void => {
    problems.set(kind, [...(problems.get(kind) ?? []), detail]);
  };
  const names = new Map<string, Map<string, string>>();
  const lookup = (target: LoraTarget, kohya: boolean, key: string): string | undefined => {
    const id = `${target}:${kohya}`;
    if (!names.has(id)) names.set(id, moduleNames(model, target, kohya));
    return names.get(id)!.get(key);
  };
  // Group the keys by module: weight name → its parts.
  const groups = new Map<string, { target: LoraTarget; prefix: string; keys: Partial<Record<Part, string>> }>();
  for (const key of file.raw.keys()) {
    if (key === '__metadata__') continue;
    const kohya = KOHYA.exec(key);
    const peft = kohya ? null : PEFT.exec(key);
    const m = kohya ?? peft;
    if (!m) {
      problem(UNSUPPORTED_KIND.test(key) ? 'conv or other non-Linear LoRA kinds (LoCon, LoHa, LoKr, DoRA) are not supported' : 'unknown', key);
      continue;
    }
    const target = kohya ? KOHYA_TARGET[m[1]!]! : (m[1] as LoraTarget);
    const module = lookup(target, kohya !== null, m[2]!);
    if (module === undefined) {
      problem('unmatched (no such module in the model)', key);
      continue;
    }
    const weight = `${module}.weight`;
    const prefix = key.slice(0, key.length - m[3]!.length - 1);
    const group = groups.get(`${target}:${weight}`) ?? { target, prefix, keys: {} };
    if (group.prefix !== prefix) problem('two spellings of one module', `${group.prefix}, ${prefix}`);
    group.keys[PART[m[3]!]!] = key;
    groups.set(`${target}:${weight}`, group);
  }
  const out = new Map<LoraTarget, Map<string, Patch>>();
  for (const [id, { target, prefix, keys }] of groups) {
    const weight = id.slice(target.length + 1);
    if (!keys.down || !keys.up) {
      problem('incomplete (down and up both needed)', `${prefix} has only ${Object.keys(keys).join(', ')}`);
      continue;
    }
    const shape = model.weights[target].get(weight)!;
    const down = file.entries.get(keys.down)?.shape;
    const up = file.entries.get(keys.up)?.shape;
    if (shape.length !== 2 || (down && down.length !== 2)) {
      problem('conv or other non-Linear LoRA kinds (LoCon, LoHa, LoKr, DoRA) are not supported', `${prefix} (weight ${formatShape(shape)})`);
      continue;
    }
    const rank = down?.[0];
    if (!down || !up || up.length !== 2 || down[1] !== shape[1] || up[0] !== shape[0] || up[1] !== rank) {
      const show = (s: readonly number[] | undefined): string => (s ? formatShape(s) : 'not a float tensor');
      problem('wrong shape', `${prefix}: down ${show(down)}, up ${show(up)} for ${weight} ${formatShape(shape)}`);
      continue;
    }
    const alpha = keys.alpha ? scalar(await file.read(keys.alpha)) : rank!;
    if (!Number.isFinite(alpha)) problem('wrong alpha', `${keys.alpha}: ${alpha}`);
    const byWeight = out.get(target) ?? new Map<string, Patch>();
    byWeight.set(weight, { file, down: keys.down, up: keys.up, rank: rank!, factor: (scale * alpha) / rank! });
    out.set(target, byWeight);
  }
  if (problems.size > 0) {
    const count = [...problems.values()].reduce((n, l) => n + l.length, 0);
    const parts = [...problems].map(([kind, items]) => `${items.length} ${kind}: ${items.slice(0, LIST).join(', ')}${items.length > LIST ? `, … (${items.length - LIST} more)` : ''}`);
    usage(`loras: ${where}: does not fit the model (${count} problem${count === 1 ? '' : 's'}): ${parts.join('; ')}`, 'loras');
  }
  return out;
}

/** A one-element tensor's value (kohya's alpha, stored in any float format). */
function scalar(t: HostTensor): number {
  const v = t.data[0];
  if (t.data.length !== 1 || v === undefined) return NaN;
  if (t.format === 'f32') return v;
  return t.format === 'f16' ? f16BitsToF32(v) : new Float32Array(new Uint32Array([v << 16]).buffer)[0]!;
}
