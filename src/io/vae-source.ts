// The `vae` option: another SDXL VAE in place of the model's — a diffusers vae folder
// (config.json and diffusion_pytorch_model(.fp16).safetensors, or its shards) or one
// .safetensors file, in diffusers naming or in SGM/original naming (encoder.down.N…, with or
// without the checkpoint's first_stage_model. prefix: sgm-names.ts maps it). A single file runs
// with the model's VAE config, so its force_upcast (f32 for SDXL's) stands; a folder's config.json
// decides (the fp16-fix VAE says force_upcast false and runs in f16).

import { usage } from '../errors.js';
import { parseCLIPTextConfig } from '../models/clip.js';
import { parseUNetConfig } from '../models/unet.js';
import { AutoencoderKL, parseVaeConfig } from '../models/vae.js';
import type { ByteReader } from './byte-reader.js';
import { type ModelFolder, type ModelFs, openWeights, type WeightVariant } from './model-folder.js';
import { SafetensorsFile } from './safetensors.js';
import { SGM_PREFIXES, SgmNameMap, type SgmTransform } from './sgm-names.js';
import { ComponentSource } from './single-file.js';
import type { TensorSource } from './tensor-source.js';

/** A VAE ready to replace a folder's (ModelFolder.withVae). */
export interface VaeWeights {
  readonly config: Readonly<Record<string, unknown>>;
  readonly source: TensorSource;
  /** The weight file, for describe(). */
  readonly path: string;
}

/** Problems named per kind in the one error, at most this many each. */
const NAMED = 5;

/** Opens `vae` (a folder, or one file) to replace `model`'s VAE; a UsageError naming the file when it is not an SDXL VAE. */
export async function openVae(vae: ModelFs | { readonly checkpoint: ByteReader }, model: ModelFolder, variant?: WeightVariant): Promise<VaeWeights> {
  if (!('checkpoint' in vae)) {
    const where = `${vae.description.replace(/\/+$/, '')}/config.json`;
    const text = await vae.readText('config.json');
    if (text === null) usage(`vae ${vae.description}: no config.json (expected a diffusers vae folder, or one .safetensors file)`, 'vae');
    let config: unknown;
    try {
      config = JSON.parse(text);
    } catch (e) {
      usage(`vae ${where}: invalid JSON (${(e as Error).message})`, 'vae');
    }
    try {
      parseVaeConfig(config, where);
    } catch (e) {
      usage(`vae ${(e as Error).message}`, 'vae');
    }
    // The folder's files, as a model folder's vae/ holds them.
    const inside: ModelFs = { description: vae.description, open: (path) => vae.open(path.replace(/^vae\//, '')), readText: (path) => vae.readText(path.replace(/^vae\//, '')) };
    const { path, source } = await openWeights(inside, 'vae', variant, false).catch((e: Error) => usage(`vae ${e.message}`, 'vae'));
    return { config: config as Record<string, unknown>, source, path: `${vae.description.replace(/\/+$/, '')}/${path.replace(/^vae\//, '')}` };
  }
  const file = await SafetensorsFile.open(vae.checkpoint).catch((e: Error) => usage(`vae ${vae.checkpoint.description}: ${e.message}`, 'vae'));
  const config = model.config('vae');
  const expected = AutoencoderKL.create(parseVaeConfig(config)).registry.expected();
  try {
    // The naming that explains more of its keys (the two share a few, e.g. encoder.conv_in.weight):
    // diffusers' makes the file the source (prepareModel checks its table like any VAE's).
    const sgm = sgmPlans(file, model);
    const diffusers = [...file.raw.keys()].filter((k) => expected.has(k)).length;
    if (diffusers > 0 && diffusers >= sgm.plans.size) return { config, source: file, path: vae.checkpoint.description };
    if (sgm.unknown.length > 0) {
      usage(`vae ${file.description}: not an SDXL VAE in diffusers or SGM naming: ${sgm.unknown.length} unknown key(s) (${sgm.unknown.slice(0, NAMED).join(', ')}${sgm.unknown.length > NAMED ? ', …' : ''})`, 'vae');
    }
    return { config, source: new ComponentSource(`${file.description} (vae)`, file, sgm.plans, () => file.close()), path: vae.checkpoint.description };
  } catch (e) {
    await file.close();
    throw e;
  }
}

/** A VAE file's keys in SGM/original naming (with or without first_stage_model.) by diffusers name, and those it does not know. */
function sgmPlans(file: SafetensorsFile, model: ModelFolder): { plans: Map<string, { key: string; transform: SgmTransform }>; unknown: string[] } {
  const names = new SgmNameMap({
    unet: parseUNetConfig(model.config('unet')),
    vae: parseVaeConfig(model.config('vae')),
    text_encoder: parseCLIPTextConfig(model.config('text_encoder')),
    text_encoder_2: parseCLIPTextConfig(model.config('text_encoder_2')),
  });
  const prefix = SGM_PREFIXES.vae;
  const plans = new Map<string, { key: string; transform: SgmTransform }>();
  const unknown: string[] = [];
  for (const key of file.raw.keys()) {
    const targets = names.targets(key.startsWith(prefix) ? key : prefix + key);
    if (targets?.length === 1 && targets[0]!.component === 'vae') plans.set(targets[0]!.name, { key, transform: targets[0]!.transform });
    else unknown.push(key);
  }
  return { plans, unknown };
}
