// LoRA files matched to the tiny model without a GPU: both namings of the fixture's LoRA reach
// the same 344 Linear weights (kohya's UNet names through the SGM map), and every kind of
// misfit is one UsageError naming the file and listing the keys.

import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { ModelFolder } from '../../src/io/model-folder.js';
import { nodeModelFs, openFileReader } from '../../src/io/node-file.js';
import { encodeSafetensors, type TensorToWrite } from '../../src/io/safetensors.js';
import { LORA_TARGETS, type LoraModel, type LoraOpener, Loras, openLoraSource } from '../../src/models/lora.js';
import { loraModel, prepareModel } from '../../src/pipeline/sdxl-turbo.js';
import { loraArg } from '../../src/cli.js';
import { diffusersUnetModuleToSgm } from '../../src/io/sgm-names.js';
import { parseUNetConfig, UNet2DConditionModel } from '../../src/models/unet.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';

const LORA = `${FIXTURES}tiny-sdxl-extensions/lora`;
const opener: LoraOpener = (s) => (typeof s === 'string' ? openFileReader(s) : openLoraSource(s));

let model: LoraModel;
beforeAll(async () => {
  model = loraModel(await prepareModel(await ModelFolder.open(nodeModelFs(TINY))));
});

const file = (tensors: TensorToWrite[], name: string): Blob => new File([encodeSafetensors(tensors)], name);
const f32 = (name: string, shape: number[]): TensorToWrite => ({ name, dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });

async function refused(tensors: TensorToWrite[], name: string): Promise<string> {
  const error = await Loras.open([{ source: file(tensors, name) }], model, opener).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(UsageError);
  expect((error as UsageError).option).toBe('loras');
  const message = (error as Error).message;
  expect(message).not.toContain('\n');
  expect(message).toContain(`loras: ${name}:`);
  return message;
}

describe('LoRA files', () => {
  it('kohya and PEFT namings reach the same 344 weights, kohya UNet names through the SGM map', async () => {
    const kohya = await Loras.open([{ source: `${LORA}/tiny_lora_kohya.safetensors`, scale: 0.8 }], model, opener);
    const peft = await Loras.open([{ source: `${LORA}/tiny_lora_peft.safetensors` }], model, opener);
    // lora-keys.json: every module with its component, as diffusers' own kohya converter maps it.
    const { modules } = JSON.parse(await readFile(`${LORA}/lora-keys.json`, 'utf8')) as { modules: Array<{ component: string; module: string }> };
    expect(modules).toHaveLength(344);
    for (const target of LORA_TARGETS) {
      const want = modules.filter((m) => m.component === target).map((m) => `${m.module}.weight`).sort();
      expect([...kohya.names(target)].sort()).toEqual(want);
      expect([...peft.names(target)].sort()).toEqual(want);
    }
    expect(kohya.names('unet')).toContain('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight');
    expect(kohya.names('text_encoder_2')).toContain('text_model.encoder.layers.0.self_attn.q_proj.weight');
    await kohya.close();
    await peft.close();
  });

  it('real SDXL UNet modules by their SGM names, as kohya SDXL files spell them', async () => {
    const config = parseUNetConfig(JSON.parse(await readFile(`${FIXTURES}sdxl-turbo-layout/unet/config.json`, 'utf8')));
    const sgm = diffusersUnetModuleToSgm(config);
    expect(sgm('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q')).toBe('input_blocks.4.1.transformer_blocks.0.attn1.to_q');
    expect(sgm('down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_out.0')).toBe('input_blocks.8.1.transformer_blocks.9.attn2.to_out.0');
    expect(sgm('mid_block.attentions.0.proj_in')).toBe('middle_block.1.proj_in');
    expect(sgm('up_blocks.0.attentions.2.transformer_blocks.9.ff.net.0.proj')).toBe('output_blocks.2.1.transformer_blocks.9.ff.net.0.proj');
    expect(sgm('up_blocks.1.attentions.0.proj_out')).toBe('output_blocks.3.1.proj_out');
    expect(sgm('down_blocks.0.resnets.1.time_emb_proj')).toBe('input_blocks.2.0.emb_layers.1');
    expect(sgm('add_embedding.linear_1')).toBe('label_emb.0.0');
    expect(sgm('down_blocks.9.attentions.0.proj_in')).toBeNull();
    // Every real module has an SGM name, and no two modules share a kohya spelling (diffusers'
    // or SGM's names with dots as underscores), so kohya keys resolve without guessing.
    const spellings = new Map<string, string>();
    for (const name of UNet2DConditionModel.create(config).registry.weights.keys()) {
      if (!name.endsWith('.weight')) continue;
      const module = name.slice(0, -'.weight'.length);
      const other = sgm(module);
      expect(other, module).not.toBeNull();
      for (const spelling of [module, other!].map((m) => m.replaceAll('.', '_'))) {
        expect(spellings.get(spelling) ?? module, spelling).toBe(module);
        spellings.set(spelling, module);
      }
    }
    expect(spellings.size).toBeGreaterThan(2000);
  });

  it("diffusers' older spellings (lora.down / lora_linear_layer.up) reach the same weight", async () => {
    const module = 'text_encoder_2.text_model.encoder.layers.1.self_attn.v_proj';
    const loras = await Loras.open(
      [{ source: file([f32(`${module}.lora.down.weight`, [4, 32]), f32(`${module}.lora_linear_layer.up.weight`, [32, 4])], 'old.safetensors') }],
      model,
      opener,
    );
    expect([...loras.names('text_encoder_2')]).toEqual(['text_model.encoder.layers.1.self_attn.v_proj.weight']);
    expect(loras.names('unet').size).toBe(0);
  });

  it('unknown, unmatched, incomplete, mis-shaped and conv keys: one error listing them', async () => {
    const q = 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj';
    const message = await refused(
      [
        f32('something_else.weight', [2]),
        f32('lora_unet_input_blocks_99_1_proj_in.lora_down.weight', [4, 8]),
        f32(`${q}.lora_down.weight`, [4, 24]),
        f32('unet.down_blocks.0.resnets.0.conv1.lora_A.weight', [4, 8, 3, 3]),
        f32('unet.down_blocks.0.resnets.0.conv1.lora_B.weight', [8, 4, 1, 1]),
        f32('lora_unet_input_blocks_1_0_in_layers_2.lora_mid.weight', [4, 4, 3, 3]),
        f32('text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_A.weight', [4, 7]),
        f32('text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_B.weight', [52, 4]),
      ],
      'bad.safetensors',
    );
    expect(message).toContain('does not fit the model (6 problems)');
    expect(message).toContain('1 unknown: something_else.weight');
    expect(message).toContain('1 unmatched (no such module in the model): lora_unet_input_blocks_99_1_proj_in.lora_down.weight');
    expect(message).toContain(`incomplete (down and up both needed): ${q} has only down`);
    expect(message).toContain('conv or other non-Linear LoRA kinds (LoCon, LoHa, LoKr, DoRA) are not supported: lora_unet_input_blocks_1_0_in_layers_2.lora_mid.weight, unet.down_blocks.0.resnets.0.conv1');
    expect(message).toContain('wrong shape: text_encoder.text_model.encoder.layers.0.mlp.fc1: down (4, 7), up (52, 4) for text_model.encoder.layers.0.mlp.fc1.weight (52, 24)');
  });

  it('bad sources and scales name the option', async () => {
    for (const [option, text] of [
      [{ source: 3 }, 'loras[0].source must be a path, URL or Blob, got 3'],
      [{ source: `${LORA}/tiny_lora_peft.safetensors`, scale: Number.NaN }, 'loras[0].scale must be a finite number, got null'],
      [{ source: '/nonexistent.safetensors' }, 'loras: /nonexistent.safetensors: cannot open (ENOENT)'],
      [{ source: new File([new Uint8Array(4)], 'tiny.bin') }, 'loras: tiny.bin: not a safetensors file'],
    ] as const) {
      const error = await Loras.open([option as never], model, opener).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toContain(text);
    }
  });

  it('--lora FILE[:SCALE]: only a trailing number is a scale', () => {
    expect(loraArg('a.safetensors')).toEqual({ source: 'a.safetensors' });
    expect(loraArg('a.safetensors:0.8')).toEqual({ source: 'a.safetensors', scale: 0.8 });
    expect(loraArg('a.safetensors:-1e-1')).toEqual({ source: 'a.safetensors', scale: -0.1 });
    expect(loraArg('C:\\loras\\a.safetensors')).toEqual({ source: 'C:\\loras\\a.safetensors' });
    expect(loraArg('C:\\loras\\a.safetensors:.5')).toEqual({ source: 'C:\\loras\\a.safetensors', scale: 0.5 });
    expect(loraArg('https://host:8080/a.safetensors')).toEqual({ source: 'https://host:8080/a.safetensors' });
    expect(loraArg('odd:2:1')).toEqual({ source: 'odd:2', scale: 1 });
  });
});
