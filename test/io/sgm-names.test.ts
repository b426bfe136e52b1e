// The SGM ↔ diffusers name map against the real single file's 2,513 keys (derived from the real
// configs, shapes checked against the real diffusers manifest) and against the tiny file's map
// found by value (test/fixtures/tiny-sdxl-extensions/single-file).

import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { MODEL_COMPONENTS } from '../../src/io/model-folder.js';
import { openFileReader } from '../../src/io/node-file.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { diffusersShape, type SgmConfigs, SgmNameMap, type SgmTransform, sgmUnetModuleToDiffusers } from '../../src/io/sgm-names.js';
import { parseCLIPTextConfig } from '../../src/models/clip.js';
import { parseUNetConfig } from '../../src/models/unet.js';
import { parseVaeConfig } from '../../src/models/vae.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';
import type { MapEntry } from '../helpers/sgm-file.js';

const SINGLE = `${FIXTURES}tiny-sdxl-extensions/single-file/`;
const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;


const json = async <T>(path: string): Promise<T> => JSON.parse(await readFile(path, 'utf8')) as T;

async function configs(dir: string): Promise<SgmConfigs> {
  return {
    unet: parseUNetConfig(await json(`${dir}/unet/config.json`)),
    vae: parseVaeConfig(await json(`${dir}/vae/config.json`)),
    text_encoder: parseCLIPTextConfig(await json(`${dir}/text_encoder/config.json`)),
    text_encoder_2: parseCLIPTextConfig(await json(`${dir}/text_encoder_2/config.json`)),
  };
}

/** The fixture's words for each transform. */
const KIND: Record<SgmTransform['kind'], RegExp> = { none: /^none$/, reshape: /^reshape /, transpose: /^transpose$/, split: /^concat q, k, v along dim 0$/ };

/** Every SGM key maps to the fixture's diffusers name(s) with its transform, the transformed
 *  shape is the diffusers tensor's, every diffusers tensor is made exactly once and leads back
 *  to its key. */
function checkMap(map: SgmNameMap, entries: readonly MapEntry[], diffusers: ReadonlyMap<string, readonly number[]>): void {
  const made = new Map<string, string>();
  const wrong: string[] = [];
  for (const e of entries) {
    const targets = map.targets(e.sgm);
    const want = typeof e.diffusers === 'string' ? [e.diffusers] : e.diffusers;
    if (!targets || targets.map((t) => t.name).join() !== want.join() || targets.some((t) => t.component !== e.component || !KIND[t.transform.kind].test(e.transform))) {
      wrong.push(`${e.sgm}: ${JSON.stringify(targets)} vs ${e.component} ${want.join()} (${e.transform})`);
      continue;
    }
    for (const t of targets) {
      if (map.sgmKey(t.component, t.name) !== e.sgm) wrong.push(`${t.component} ${t.name} leads back to ${map.sgmKey(t.component, t.name)}, not ${e.sgm}`);
      const key = `${t.component}/${t.name}`;
      if (made.has(key)) wrong.push(`${key} made by ${made.get(key)} and ${e.sgm}`);
      made.set(key, e.sgm);
      const shape = diffusers.get(key);
      if (shape?.join() !== diffusersShape(e.shape, t.transform).join()) wrong.push(`${e.sgm} → ${key}: ${JSON.stringify(diffusersShape(e.shape, t.transform))} vs ${JSON.stringify(shape)}`);
    }
  }
  for (const key of diffusers.keys()) if (!made.has(key)) wrong.push(`${key} made by no SGM key`);
  expect(wrong).toEqual([]);
}

describe('SGM name map', () => {
  it('maps all 2,513 keys of the real single file to the real diffusers tensors (names, transforms, shapes)', async () => {
    const manifest = await json<{ num_keys: number; keys: MapEntry[] }>(`${SINGLE}sdxl-turbo-sgm-manifest.json`);
    expect(manifest.keys.length).toBe(2513);
    const layout = await json<{ components: Record<string, { tensors: Array<{ name: string; shape: number[] }> }> }>(`${LAYOUT}/weights-manifest.json`);
    const diffusers = new Map(Object.entries(layout.components).flatMap(([c, { tensors }]) => tensors.map((t) => [`${c}/${t.name}`, t.shape] as const)));
    checkMap(new SgmNameMap(await configs(LAYOUT)), manifest.keys, diffusers);
  });

  it("maps the tiny file's keys as found by value (q/k/v split by the hidden size 32, not the projection 20)", async () => {
    const tiny = await json<{ keys: MapEntry[] }>(`${SINGLE}tiny-name-map.json`);
    const diffusers = new Map<string, readonly number[]>();
    for (const c of MODEL_COMPONENTS) {
      const base = c.startsWith('text') ? 'model' : 'diffusion_pytorch_model';
      const file = await SafetensorsFile.open(await openFileReader(`${TINY}/${c}/${base}.safetensors`));
      for (const [name, e] of file.entries) diffusers.set(`${c}/${name}`, e.shape);
      await file.close();
    }
    const map = new SgmNameMap(await configs(TINY));
    checkMap(map, tiny.keys, diffusers);
    expect(map.targets('conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight')!.map((t) => t.transform)).toEqual([0, 1, 2].map((part) => ({ kind: 'split', part, rows: 32 })));
  });

  it('ignores known non-parameter keys and knows no other key', async () => {
    const map = new SgmNameMap(await configs(LAYOUT));
    expect(map.targets('conditioner.embedders.0.transformer.text_model.embeddings.position_ids')).toEqual([]);
    expect(map.targets('conditioner.embedders.1.model.logit_scale')).toEqual([]);
    expect(map.targets('alphas_cumprod')).toEqual([]);
    for (const key of [
      'model.diffusion_model.input_blocks.99.0.in_layers.0.weight',
      'model.diffusion_model.input_blocks.1.0.in_layers.1.weight',
      'first_stage_model.decoder.up.4.block.0.conv1.weight',
      'first_stage_model.encoder.mid.attn_1.qkv.weight',
      'conditioner.embedders.1.model.transformer.resblocks.32.ln_1.weight',
      'conditioner.embedders.1.model.visual.proj',
      'conditioner.embedders.2.model.x',
      'model_ema.decay',
    ]) {
      expect(map.targets(key), key).toBeNull();
    }
  });

  it('maps UNet and text-encoder module names (the LoRA names) on their own', async () => {
    const real = await configs(LAYOUT);
    expect(sgmUnetModuleToDiffusers('input_blocks.4.1.transformer_blocks.0.attn1.to_q', real.unet)).toBe('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q');
    expect(sgmUnetModuleToDiffusers('output_blocks.2.1.proj_in', real.unet)).toBe('up_blocks.0.attentions.2.proj_in');
    expect(sgmUnetModuleToDiffusers('middle_block.1.transformer_blocks.9.ff.net.2', real.unet)).toBe('mid_block.attentions.0.transformer_blocks.9.ff.net.2');
    expect(sgmUnetModuleToDiffusers('input_blocks.7.0.in_layers.2', real.unet)).toBe('down_blocks.2.resnets.0.conv1');
    expect(sgmUnetModuleToDiffusers('input_blocks.9.1.proj_in', real.unet)).toBeNull();
    const map = new SgmNameMap(real);
    expect(map.module('text_encoder_2', 'transformer.resblocks.31.mlp.c_fc')).toBe('text_model.encoder.layers.31.mlp.fc1');
    expect(map.module('text_encoder_2', 'transformer.resblocks.0.attn.out_proj')).toBe('text_model.encoder.layers.0.self_attn.out_proj');
    expect(map.module('text_encoder', 'text_model.encoder.layers.11.self_attn.q_proj')).toBe('text_model.encoder.layers.11.self_attn.q_proj');
  });
});
