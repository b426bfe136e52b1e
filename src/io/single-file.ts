// A single-file SDXL checkpoint — one .safetensors in the SGM layout, as Stability publishes
// sd_xl_turbo_1.0_fp16.safetensors and A1111 / ComfyUI / civitai fine-tunes are shared — opened
// as a ModelFolder: configs and tokenizers from a diffusers folder without weights (the built-in
// SDXL one, or --config DIR), and one TensorSource per network that names its tensors as
// diffusers does (sgm-names.ts) and applies the transforms as each tensor is read. Tensors are
// read one at a time from the file (q, k, v each read as its own byte range of the stack), so
// the file is never held in memory.

import { asUsage, usage } from '../errors.js';
import { CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig } from '../models/clip.js';
import { parseUNetConfig, UNet2DConditionModel } from '../models/unet.js';
import { AutoencoderKL, parseVaeConfig } from '../models/vae.js';
import { formatShape } from '../tensor.js';
import type { ByteReader } from './byte-reader.js';
import { MODEL_COMPONENTS, type ModelComponent, ModelFolder, type ModelFs } from './model-folder.js';
import { SafetensorsFile } from './safetensors.js';
import { diffusersShape, type SgmConfigs, SgmNameMap, sgmShape, type SgmTransform } from './sgm-names.js';
import type { HostTensor, TensorEntry, TensorSource } from './tensor-source.js';

/** Where a diffusers tensor comes from. */
interface Plan {
  readonly key: string;
  readonly transform: SgmTransform;
}

/** Problems listed per kind in the one error, at most this many named each. */
const NAMED = 5;

/**
 * Opens `file` as the SDXL model `config` describes (model_index.json, the configs and tokenizers
 * of a diffusers folder; its weight files, if any, are not read). Every unknown, missing or
 * mis-shaped key of the file is reported in one UsageError naming the file.
 */
export async function openSingleFile(file: ByteReader, config: ModelFs): Promise<ModelFolder> {
  let configs: SgmConfigs;
  let checkpoint: SafetensorsFile;
  try {
    // A malformed config or file is the caller's input.
    configs = await asUsage(readConfigs(config));
    checkpoint = await asUsage(SafetensorsFile.open(file));
  } catch (e) {
    await file.close?.();
    throw e;
  }
  try {
    const plans = planComponents(checkpoint, configs, `${file.description} (with the configs of ${config.description})`);
    let closed: Promise<void> | null = null;
    const close = (): Promise<void> => (closed ??= checkpoint.close());
    const weights = Object.fromEntries(MODEL_COMPONENTS.map((c) => [c, new ComponentSource(`${file.description} (${c})`, checkpoint, plans.get(c)!, close)]));
    return await ModelFolder.open(config, { weights });
  } catch (e) {
    await checkpoint.close();
    throw e;
  }
}

async function readConfigs(fs: ModelFs): Promise<SgmConfigs> {
  const read = async (path: string): Promise<unknown> => {
    const where = `${fs.description.replace(/\/+$/, '')}/${path}`;
    const text = await fs.readText(path);
    if (text === null) usage(`${where}: missing (the configs a single-file checkpoint runs with)`);
    try {
      return JSON.parse(text);
    } catch (e) {
      usage(`${where}: invalid JSON (${(e as Error).message})`);
    }
  };
  const where = (c: ModelComponent): string => `${fs.description.replace(/\/+$/, '')}/${c}/config.json`;
  return {
    unet: parseUNetConfig(await read('unet/config.json'), where('unet')),
    vae: parseVaeConfig(await read('vae/config.json'), where('vae')),
    text_encoder: parseCLIPTextConfig(await read('text_encoder/config.json'), where('text_encoder')),
    text_encoder_2: parseCLIPTextConfig(await read('text_encoder_2/config.json'), where('text_encoder_2')),
  };
}

/** Each network's tensors by diffusers name, checked against the models the configs describe. */
function planComponents(file: SafetensorsFile, configs: SgmConfigs, where: string): Map<ModelComponent, Map<string, Plan>> {
  const expected = new Map<ModelComponent, ReadonlyMap<string, readonly number[]>>([
    ['text_encoder', CLIPTextModel.create(configs.text_encoder).registry.expected()],
    ['text_encoder_2', CLIPTextModelWithProjection.create(configs.text_encoder_2).registry.expected()],
    ['unet', UNet2DConditionModel.create(configs.unet).registry.expected()],
    ['vae', AutoencoderKL.create(configs.vae).registry.expected()],
  ]);
  const names = new SgmNameMap(configs);
  const plans = new Map(MODEL_COMPONENTS.map((c) => [c, new Map<string, Plan>()]));
  const problems = { unknown: [] as string[], missing: [] as string[], 'wrong shape': [] as string[], 'not a float tensor': [] as string[] };
  for (const entry of file.raw.values()) {
    const targets = names.targets(entry.name);
    if (targets?.length === 0) continue; // a known non-parameter key
    const shapes = targets?.map((t) => expected.get(t.component)!.get(t.name));
    if (!targets || !shapes!.every((s) => s !== undefined)) {
      problems.unknown.push(entry.name);
      continue;
    }
    const want = sgmShape(shapes![0]!, targets[0]!.transform);
    if (entry.shape.join() !== want.join()) problems['wrong shape'].push(`${entry.name} is ${formatShape(entry.shape)}, expected ${formatShape(want)}`);
    else if (!['F32', 'F16', 'BF16'].includes(entry.dtype)) problems['not a float tensor'].push(`${entry.name} (${entry.dtype})`);
    else for (const t of targets) plans.get(t.component)!.set(t.name, { key: entry.name, transform: t.transform });
  }
  const missing = new Set<string>(); // a Set: the check stays linear in the model's size
  for (const [component, table] of expected) {
    for (const [name, shape] of table) {
      if (plans.get(component)!.has(name)) continue;
      const key = names.sgmKey(component, name);
      // q, k and v of one stack are one missing key.
      const line = key === null ? `${component} ${name} ${formatShape(shape)}` : key;
      if (!file.raw.has(key ?? '')) missing.add(line);
    }
  }
  problems.missing = [...missing];
  const parts = Object.entries(problems)
    .filter(([, items]) => items.length > 0)
    .map(([kind, items]) => `${items.length} ${kind} (${items.slice(0, NAMED).join(', ')}${items.length > NAMED ? ', …' : ''})`);
  if (parts.length > 0) usage(`${where}: not the SDXL single-file checkpoint the configs describe: ${parts.join('; ')}`);
  return plans;
}

/** One network's tensors out of the single file, named and shaped as diffusers has them. */
class ComponentSource implements TensorSource {
  readonly entries: ReadonlyMap<string, TensorEntry>;

  constructor(
    readonly description: string,
    private readonly file: SafetensorsFile,
    private readonly plans: ReadonlyMap<string, Plan>,
    readonly close: () => Promise<void>,
  ) {
    this.entries = new Map(
      [...plans].map(([name, { key, transform }]) => {
        const { format, shape } = file.entries.get(key)!;
        return [name, { name, format, shape: diffusersShape(shape, transform) }];
      }),
    );
  }

  async read(name: string): Promise<HostTensor> {
    const plan = this.plans.get(name);
    if (!plan) throw new Error(`${this.description}: no tensor named ${name}`);
    const { key, transform } = plan;
    if (transform.kind === 'split') {
      const count = this.entries.get(name)!.shape.reduce((a, d) => a * d, 1);
      return this.file.read(key, { start: transform.part * count, count });
    }
    const host = await this.file.read(key);
    if (transform.kind !== 'transpose') return host;
    const [rows, cols] = this.file.entries.get(key)!.shape as [number, number];
    const out = host.data instanceof Float32Array ? new Float32Array(host.data.length) : new Uint16Array(host.data.length);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = host.data[r * cols + c]!;
    return { format: host.format, data: out };
  }
}
