// THE name map between the single-file (SGM / "original") layout of SDXL checkpoints and the
// diffusers / transformers names our models declare. Built from the components' configs (levels,
// resnets per level, which levels have attention, encoder layers), never from a list of keys:
//   model.diffusion_model.*                UNet, input_blocks / middle_block / output_blocks
//   first_stage_model.*                    VAE, encoder.down.N / decoder.up.N (N reversed)
//   conditioner.embedders.0.transformer.*  CLIP-L, already transformers names
//   conditioner.embedders.1.model.*        OpenCLIP bigG, transformer.resblocks.N.*
// Transforms (SGM → diffusers): VAE mid-attention q/k/v/proj_out weights are 1×1 convs
// (C, C, 1, 1) where diffusers has Linear (C, C); bigG's attn.in_proj_{weight,bias} stack q, k, v
// along dim 0 and split by the HIDDEN size (not the projection width); text_projection is stored
// transposed. Everything else is a rename.

import type { CLIPTextConfig } from '../models/clip.js';
import type { UNetConfig } from '../models/unet.js';
import type { VaeConfig } from '../models/vae.js';
import type { ModelComponent } from './model-folder.js';

/** The parsed configs the map is derived from. */
export interface SgmConfigs {
  readonly unet: UNetConfig;
  readonly vae: VaeConfig;
  readonly text_encoder: CLIPTextConfig;
  readonly text_encoder_2: CLIPTextConfig;
}

/** How a diffusers tensor is made from the SGM tensor it comes from. */
export type SgmTransform =
  | { readonly kind: 'none' }
  /** (C, C, 1, 1) → (C, C): the same bytes. */
  | { readonly kind: 'reshape' }
  /** (h, p) → (p, h). */
  | { readonly kind: 'transpose' }
  /** Rows [part · rows, (part + 1) · rows) of a (3h, …) tensor: q, k, v = parts 0, 1, 2. */
  | { readonly kind: 'split'; readonly part: number; readonly rows: number };

/** The shape of the diffusers tensor a transform makes of an SGM tensor of `shape`. */
export function diffusersShape(shape: readonly number[], t: SgmTransform): readonly number[] {
  if (t.kind === 'reshape') return shape.slice(0, 2);
  if (t.kind === 'transpose') return [...shape].reverse();
  if (t.kind === 'split') return [t.rows, ...shape.slice(1)];
  return shape;
}

/** The SGM shape that holds a diffusers tensor of `shape` (diffusersShape's inverse). */
export function sgmShape(shape: readonly number[], t: SgmTransform): readonly number[] {
  if (t.kind === 'reshape') return [...shape, 1, 1];
  if (t.kind === 'transpose') return [...shape].reverse();
  if (t.kind === 'split') return [shape[0]! * 3, ...shape.slice(1)];
  return shape;
}

export interface SgmTarget {
  readonly component: ModelComponent;
  /** The diffusers / transformers tensor name inside the component. */
  readonly name: string;
  readonly transform: SgmTransform;
}

/** Where each component's keys live in a single file. */
export const SGM_PREFIXES: Readonly<Record<ModelComponent, string>> = {
  unet: 'model.diffusion_model.',
  vae: 'first_stage_model.',
  text_encoder: 'conditioner.embedders.0.transformer.',
  text_encoder_2: 'conditioner.embedders.1.model.',
};

/**
 * Keys published files carry that are not parameters of any model: buffers (CLIP's
 * position_ids, OpenCLIP's logit_scale) and the training framework's sampler tables
 * (LDM's DDPM schedule, SGM's denoiser sigmas). Ignored by name; any other unknown key is an error.
 */
export const SGM_IGNORED_KEYS: ReadonlySet<string> = new Set([
  'conditioner.embedders.0.transformer.text_model.embeddings.position_ids',
  'conditioner.embedders.1.model.logit_scale',
  'denoiser.sigmas',
  'denoiser.log_sigmas',
  ...[
    'betas',
    'alphas_cumprod',
    'alphas_cumprod_prev',
    'sqrt_alphas_cumprod',
    'sqrt_one_minus_alphas_cumprod',
    'log_one_minus_alphas_cumprod',
    'sqrt_recip_alphas_cumprod',
    'sqrt_recipm1_alphas_cumprod',
    'posterior_variance',
    'posterior_log_variance_clipped',
    'posterior_mean_coef1',
    'posterior_mean_coef2',
  ],
]);

type Leaf = { readonly to: string | readonly string[]; readonly transform: SgmTransform['kind'] };

/** Renames inside one module. Keys are SGM sub-module paths ('in_layers.0') or whole parameter
 *  paths ('q.weight'); `open` keeps any other path as it is (modules named alike on both sides). */
interface Leaves {
  readonly map: ReadonlyMap<string, Leaf>;
  readonly open: boolean;
}

const rename = (pairs: ReadonlyArray<readonly [string, string]>): Leaves => ({
  map: new Map(pairs.map(([from, to]) => [from, { to, transform: 'none' }])),
  open: false,
});
const SAME: Leaves = { map: new Map(), open: true };

const UNET_RESNET = rename([
  ['in_layers.0', 'norm1'],
  ['in_layers.2', 'conv1'],
  ['emb_layers.1', 'time_emb_proj'],
  ['out_layers.0', 'norm2'],
  ['out_layers.3', 'conv2'],
  ['skip_connection', 'conv_shortcut'],
]);
const VAE_RESNET = rename([
  ['norm1', 'norm1'],
  ['conv1', 'conv1'],
  ['norm2', 'norm2'],
  ['conv2', 'conv2'],
  ['nin_shortcut', 'conv_shortcut'],
]);
/** The VAE's mid-block attention: 1×1 convs in SGM, Linear in diffusers. */
const VAE_ATTENTION: Leaves = {
  map: new Map<string, Leaf>(
    ([['norm', 'group_norm'], ['q', 'to_q'], ['k', 'to_k'], ['v', 'to_v'], ['proj_out', 'to_out.0']] as const).flatMap(([from, to]) => [
      [`${from}.weight`, { to: `${to}.weight`, transform: from === 'norm' ? 'none' : 'reshape' }],
      [`${from}.bias`, { to: `${to}.bias`, transform: 'none' }],
    ]),
  ),
  open: false,
};
const qkv = (param: string): readonly string[] => ['q', 'k', 'v'].map((p) => `self_attn.${p}_proj.${param}`);
/** One OpenCLIP residual block → one transformers CLIPEncoderLayer. */
const BIGG_LAYER: Leaves = {
  map: new Map<string, Leaf>([
    ['ln_1', { to: 'layer_norm1', transform: 'none' }],
    ['ln_2', { to: 'layer_norm2', transform: 'none' }],
    ['mlp.c_fc', { to: 'mlp.fc1', transform: 'none' }],
    ['mlp.c_proj', { to: 'mlp.fc2', transform: 'none' }],
    ['attn.out_proj', { to: 'self_attn.out_proj', transform: 'none' }],
    ['attn.in_proj_weight', { to: qkv('weight'), transform: 'split' }],
    ['attn.in_proj_bias', { to: qkv('bias'), transform: 'split' }],
  ]),
  open: false,
};
/** bigG's top-level parameters, which are bare tensors (no .weight) in OpenCLIP. */
const BIGG_ROOT: Leaves = {
  map: new Map<string, Leaf>([
    ['positional_embedding', { to: 'text_model.embeddings.position_embedding.weight', transform: 'none' }],
    ['text_projection', { to: 'text_projection.weight', transform: 'transpose' }],
  ]),
  open: false,
};

interface Module {
  readonly to: string;
  readonly leaves: Leaves;
}

type ModuleTable = Map<string, Module>;

/** The UNet's modules: SGM numbers every block of a level in one running sequence (a resnet with
 *  its attention, then the level's down- or upsampler), diffusers nests them per level. */
function unetModules(c: UNetConfig): ModuleTable {
  const t: ModuleTable = new Map();
  const add = (sgm: string, to: string, leaves: Leaves = SAME): void => void t.set(sgm, { to, leaves });
  add('time_embed.0', 'time_embedding.linear_1');
  add('time_embed.2', 'time_embedding.linear_2');
  add('label_emb.0.0', 'add_embedding.linear_1');
  add('label_emb.0.2', 'add_embedding.linear_2');
  add('input_blocks.0.0', 'conv_in');
  add('out.0', 'conv_norm_out');
  add('out.2', 'conv_out');
  const levels = c.blockOutChannels.length;
  let input = 1;
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < c.layersPerBlock[i]!; j++, input++) {
      add(`input_blocks.${input}.0`, `down_blocks.${i}.resnets.${j}`, UNET_RESNET);
      if (c.downBlockTypes[i] === 'CrossAttnDownBlock2D') add(`input_blocks.${input}.1`, `down_blocks.${i}.attentions.${j}`);
    }
    if (i < levels - 1) add(`input_blocks.${input++}.0.op`, `down_blocks.${i}.downsamplers.0.conv`);
  }
  add('middle_block.0', 'mid_block.resnets.0', UNET_RESNET);
  add('middle_block.1', 'mid_block.attentions.0');
  add('middle_block.2', 'mid_block.resnets.1', UNET_RESNET);
  let output = 0;
  for (let i = 0; i < levels; i++) {
    const attention = c.upBlockTypes[i] === 'CrossAttnUpBlock2D';
    const resnets = c.layersPerBlock[levels - 1 - i]! + 1;
    for (let j = 0; j < resnets; j++, output++) {
      add(`output_blocks.${output}.0`, `up_blocks.${i}.resnets.${j}`, UNET_RESNET);
      if (attention) add(`output_blocks.${output}.1`, `up_blocks.${i}.attentions.${j}`);
    }
    // The upsampler sits in the level's last block, after its resnet (and attention).
    if (i < levels - 1) add(`output_blocks.${output - 1}.${attention ? 2 : 1}`, `up_blocks.${i}.upsamplers.0`);
  }
  return t;
}

/** The VAE's modules: the decoder's `up` levels are numbered from the lowest resolution in SGM,
 *  from the highest in diffusers. */
function vaeModules(c: VaeConfig): ModuleTable {
  const t: ModuleTable = new Map();
  const add = (sgm: string, to: string, leaves: Leaves = SAME): void => void t.set(sgm, { to, leaves });
  const levels = c.blockOutChannels.length;
  for (const part of ['encoder', 'decoder']) {
    add(`${part}.conv_in`, `${part}.conv_in`);
    add(`${part}.conv_out`, `${part}.conv_out`);
    add(`${part}.norm_out`, `${part}.conv_norm_out`);
    add(`${part}.mid.block_1`, `${part}.mid_block.resnets.0`, VAE_RESNET);
    add(`${part}.mid.block_2`, `${part}.mid_block.resnets.1`, VAE_RESNET);
    add(`${part}.mid.attn_1`, `${part}.mid_block.attentions.0`, VAE_ATTENTION);
  }
  add('quant_conv', 'quant_conv');
  add('post_quant_conv', 'post_quant_conv');
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < c.layersPerBlock; j++) add(`encoder.down.${i}.block.${j}`, `encoder.down_blocks.${i}.resnets.${j}`, VAE_RESNET);
    if (i < levels - 1) add(`encoder.down.${i}.downsample.conv`, `encoder.down_blocks.${i}.downsamplers.0.conv`);
    const up = levels - 1 - i;
    for (let j = 0; j < c.layersPerBlock + 1; j++) add(`decoder.up.${up}.block.${j}`, `decoder.up_blocks.${i}.resnets.${j}`, VAE_RESNET);
    if (i < levels - 1) add(`decoder.up.${up}.upsample.conv`, `decoder.up_blocks.${i}.upsamplers.0.conv`);
  }
  return t;
}

function bigGModules(c: CLIPTextConfig): ModuleTable {
  const t: ModuleTable = new Map([
    ['', { to: '', leaves: BIGG_ROOT }],
    ['token_embedding', { to: 'text_model.embeddings.token_embedding', leaves: SAME }],
    ['ln_final', { to: 'text_model.final_layer_norm', leaves: SAME }],
  ]);
  for (let n = 0; n < c.numHiddenLayers; n++) t.set(`transformer.resblocks.${n}`, { to: `text_model.encoder.layers.${n}`, leaves: BIGG_LAYER });
  return t;
}

/** CLIP-L is stored with transformers' own names. */
const clipLModules = (): ModuleTable => new Map([['text_model', { to: 'text_model', leaves: SAME }]]);

const join = (prefix: string, rest: string): string => (prefix === '' ? rest : rest === '' ? prefix : `${prefix}.${rest}`);

/** The module of `path` with the longest SGM prefix ('' is a component's root), and what follows it. */
function findModule(table: ModuleTable, path: string): { module: Module; rest: string } | null {
  for (let end = path.length; ; end = Math.max(path.lastIndexOf('.', end - 1), 0)) {
    const module = table.get(path.slice(0, end));
    if (module) return { module, rest: end === 0 ? path : path.slice(end + 1) };
    if (end === 0) return null;
  }
}

/** `rest` (a path inside a module) renamed by its leaves; null when they do not know it. */
function renameLeaf(leaves: Leaves, rest: string): { leaf: Leaf; tail: string } | null {
  const exact = leaves.map.get(rest);
  if (exact) return { leaf: exact, tail: '' };
  for (let dot = rest.lastIndexOf('.'); dot > 0; dot = rest.lastIndexOf('.', dot - 1)) {
    const leaf = leaves.map.get(rest.slice(0, dot));
    if (leaf) return { leaf, tail: rest.slice(dot + 1) };
  }
  return leaves.open ? { leaf: { to: rest, transform: 'none' }, tail: '' } : null;
}

/** The same table read from the diffusers side (q, k and v each lead back to their stack). */
function reversed(table: ModuleTable): ModuleTable {
  const flip = (l: Leaves): Leaves => {
    const map = new Map<string, Leaf>();
    for (const [from, { to, transform }] of l.map) for (const t of typeof to === 'string' ? [to] : to) map.set(t, { to: from, transform });
    return { map, open: l.open };
  };
  return new Map([...table].map(([sgm, { to, leaves: l }]) => [to, { to: sgm, leaves: flip(l) }]));
}

/** SGM ↔ diffusers names for one model's configs. */
export class SgmNameMap {
  private readonly tables: ReadonlyMap<ModelComponent, ModuleTable>;
  private readonly reverse: ReadonlyMap<ModelComponent, ModuleTable>;

  constructor(private readonly configs: SgmConfigs) {
    this.tables = new Map<ModelComponent, ModuleTable>([
      ['unet', unetModules(configs.unet)],
      ['vae', vaeModules(configs.vae)],
      ['text_encoder', clipLModules()],
      ['text_encoder_2', bigGModules(configs.text_encoder_2)],
    ]);
    this.reverse = new Map([...this.tables].map(([c, t]) => [c, reversed(t)]));
  }

  /** The SGM key that holds a diffusers tensor (bigG's q/k/v: their in_proj stack); null if none. */
  sgmKey(component: ModelComponent, name: string): string | null {
    const found = findModule(this.reverse.get(component)!, name);
    const renamed = found && renameLeaf(found.module.leaves, found.rest);
    if (!renamed || typeof renamed.leaf.to !== 'string') return null;
    return SGM_PREFIXES[component] + join(join(found.module.to, renamed.leaf.to), renamed.tail);
  }

  /**
   * The diffusers tensor(s) an SGM key holds: one, or three for a q/k/v stack; [] for a known
   * non-parameter key (SGM_IGNORED_KEYS); null for a key the layout does not have.
   */
  targets(key: string): readonly SgmTarget[] | null {
    if (SGM_IGNORED_KEYS.has(key)) return [];
    for (const [component, prefix] of Object.entries(SGM_PREFIXES) as Array<[ModelComponent, string]>) {
      if (!key.startsWith(prefix)) continue;
      const found = findModule(this.tables.get(component)!, key.slice(prefix.length));
      const renamed = found && renameLeaf(found.module.leaves, found.rest);
      if (!renamed || (renamed.tail === '' && found.rest === '' && found.module.leaves === SAME)) return null;
      const { leaf, tail } = renamed;
      const name = (to: string): string => join(join(found.module.to, to), tail);
      if (typeof leaf.to !== 'string') {
        const rows = this.configs.text_encoder_2.hiddenSize;
        return leaf.to.map((to, part) => ({ component, name: name(to), transform: { kind: 'split', part, rows } }));
      }
      const transform: SgmTransform = leaf.transform === 'split' ? { kind: 'none' } : { kind: leaf.transform };
      return [{ component, name: name(leaf.to), transform }];
    }
    return null;
  }

  /**
   * A module's diffusers name from its SGM name inside the component (no prefix, no parameter):
   * unet 'input_blocks.4.1.transformer_blocks.0.attn1.to_q' →
   * 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q'; text_encoder_2
   * 'transformer.resblocks.0.mlp.c_fc' → 'text_model.encoder.layers.0.mlp.fc1'. Null when the
   * layout has no such module (or it is bigG's q/k/v stack, which is three modules).
   */
  module(component: ModelComponent, sgmModule: string): string | null {
    return moduleName(this.tables.get(component)!, sgmModule);
  }
}

function moduleName(table: ModuleTable, sgmModule: string): string | null {
  const found = findModule(table, sgmModule);
  const renamed = found && renameLeaf(found.module.leaves, found.rest);
  if (!renamed || typeof renamed.leaf.to !== 'string') return null;
  return join(join(found.module.to, renamed.leaf.to), renamed.tail);
}

/** The UNet module of an SGM (kohya) name, from the UNet's config alone; see SgmNameMap.module. */
export function sgmUnetModuleToDiffusers(module: string, unet: UNetConfig): string | null {
  return moduleName(unetModules(unet), module);
}

/**
 * The reverse of sgmUnetModuleToDiffusers, built once per config: a UNet module's SGM name from
 * its diffusers name ('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q' →
 * 'input_blocks.4.1.transformer_blocks.0.attn1.to_q'; kohya LoRA keys name modules so), or null.
 */
export function diffusersUnetModuleToSgm(unet: UNetConfig): (module: string) => string | null {
  const table = unetModules(unet);
  const reverse = new Map([...table].map(([sgm, m]) => [m.to, { sgm, leaves: m.leaves }]));
  return (module) => {
    for (let end = module.length; end > 0; end = module.lastIndexOf('.', end - 1)) {
      const found = reverse.get(module.slice(0, end));
      if (!found) continue;
      const rest = module.slice(end + 1);
      const leaf = [...found.leaves.map].find(([, l]) => typeof l.to === 'string' && (rest === l.to || rest.startsWith(`${l.to}.`)));
      const inner = leaf ? join(leaf[0], rest.slice((leaf[1].to as string).length + 1)) : found.leaves.open ? rest : null;
      const sgm = inner === null ? null : join(found.sgm, inner);
      // Only names the forward map takes back to `module`.
      return sgm !== null && moduleName(table, sgm) === module ? sgm : null;
    }
    return null;
  };
}
