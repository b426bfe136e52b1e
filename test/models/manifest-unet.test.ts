// The UNet built from the real sdxl-turbo config declares exactly the tensors of the real
// checkpoint (names and shapes); plus the config parsing: per-level lists, the heads naming
// trap, and a clear error for everything outside the SDXL family. No GPU, no weights.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseUNetConfig, UNet2DConditionModel } from '../../src/models/unet.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';

const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;
const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));
const realConfig = readJson(`${LAYOUT}/unet/config.json`) as Record<string, unknown>;

interface Manifest {
  components: Record<string, { class: string; num_tensors: number; tensors: Array<{ name: string; shape: number[] }> }>;
}

describe('UNet against the real weight manifest', () => {
  it('declares exactly the manifest tensors, names and shapes', () => {
    const entry = (readJson(`${LAYOUT}/weights-manifest.json`) as Manifest).components['unet']!;
    expect(entry.class).toBe('UNet2DConditionModel');
    const { registry } = UNet2DConditionModel.create(parseUNetConfig(realConfig));
    const expected = new Map(entry.tensors.map((t) => [t.name, t.shape]));
    const declared = new Map([...registry.expected()].map(([n, s]) => [n, [...s]]));
    expect(declared.size).toBe(entry.num_tensors);
    expect([...declared.keys()].sort()).toEqual([...expected.keys()].sort());
    expect(declared).toEqual(expected);
    expect(registry.tolerated.size).toBe(0);
  });

  it('parses the real config: heads per level, lists normalized, derived widths', () => {
    expect(parseUNetConfig(realConfig)).toEqual({
      inChannels: 4,
      outChannels: 4,
      blockOutChannels: [320, 640, 1280],
      downBlockTypes: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
      upBlockTypes: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
      layersPerBlock: [2, 2, 2],
      transformerLayersPerBlock: [1, 2, 10],
      heads: [5, 10, 20], // attention_head_dim is the head count: 64-wide heads
      crossAttentionDim: 2048,
      normNumGroups: 32,
      normEps: 1e-5,
      flipSinToCos: true,
      freqShift: 0,
      additionTimeEmbedDim: 256,
      projectionClassEmbeddingsInputDim: 2816,
      timeEmbedDim: 1280,
      textEmbedsDim: 1280,
    });
  });

  it('the tiny fixture config has the same structure at small sizes', () => {
    const tiny = parseUNetConfig(readJson(`${TINY}/unet/config.json`));
    expect(tiny).toMatchObject({ blockOutChannels: [16, 32, 48], heads: [1, 4, 2], transformerLayersPerBlock: [1, 2, 3], textEmbedsDim: 20, timeEmbedDim: 64 });
  });
});

describe('UNet config parsing', () => {
  const parse = (changes: Record<string, unknown>) => () => parseUNetConfig({ ...realConfig, ...changes }, 'unet/config.json');

  it('rejects every setting outside the SDXL family, naming the key and value', () => {
    expect(parse({ use_linear_projection: false })).toThrow(/unet\/config\.json: "use_linear_projection" is false, expected true/);
    expect(parse({ down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'AttnDownBlock2D'] })).toThrow(/"down_block_types" is \["DownBlock2D","CrossAttnDownBlock2D","AttnDownBlock2D"\]/);
    expect(parse({ up_block_types: ['UpBlock2D'] })).toThrow(/3 block_out_channels but 3 down_block_types and 1 up_block_types/);
    expect(parse({ mid_block_type: 'UNetMidBlock2DSimpleCrossAttn' })).toThrow(/"mid_block_type" is "UNetMidBlock2DSimpleCrossAttn"/);
    expect(parse({ addition_embed_type: 'text' })).toThrow(/"addition_embed_type" is "text", expected "text_time"/);
    expect(parse({ time_embedding_type: 'fourier' })).toThrow(/"time_embedding_type" is "fourier"/);
    expect(parse({ resnet_time_scale_shift: 'scale_shift' })).toThrow(/"resnet_time_scale_shift" is "scale_shift"/);
    expect(parse({ act_fn: 'gelu' })).toThrow(/"act_fn" is "gelu"/);
    expect(parse({ class_embed_type: 'timestep' })).toThrow(/"class_embed_type" is "timestep", expected null/);
    expect(parse({ num_attention_heads: [5, 10, 20] })).toThrow(/"num_attention_heads" is \[5,10,20\], expected null/);
    expect(parse({ time_cond_proj_dim: 256 })).toThrow(/"time_cond_proj_dim" is 256/);
    expect(parse({ attention_head_dim: [5, 10] })).toThrow(/"attention_head_dim" is \[5,10\], expected an integer in \[1, 256\] or a list of 3 of them/);
    expect(parse({ attention_head_dim: [5, 10, 7] })).toThrow(/block_out_channels\[2\] = 1280 does not split into attention_head_dim\[2\] = 7 heads/);
    expect(parse({ projection_class_embeddings_input_dim: 1536 })).toThrow(/leaves no room for text embeds/);
    const { addition_time_embed_dim: _, ...noTimeDim } = realConfig;
    expect(() => parseUNetConfig(noTimeDim)).toThrow(/missing required key "addition_time_embed_dim"/);
    // Left out, use_linear_projection takes diffusers' default (false): not SDXL.
    const { use_linear_projection: _u, ...noLinear } = realConfig;
    expect(() => parseUNetConfig(noLinear)).toThrow(/"use_linear_projection" is false/);
  });

  it('expands scalar per-level settings to every level', () => {
    const config = parseUNetConfig({ ...realConfig, attention_head_dim: 10, transformer_layers_per_block: 2, layers_per_block: [2, 3, 1] });
    expect(config.heads).toEqual([10, 10, 10]);
    expect(config.transformerLayersPerBlock).toEqual([2, 2, 2]);
    expect(config.layersPerBlock).toEqual([2, 3, 1]);
    // Non-uniform resnet counts: up level i has layers_per_block[reversed i] + 1 resnets.
    const names = [...UNet2DConditionModel.create(config).registry.expected().keys()];
    const resnets = (block: string) => new Set(names.filter((n) => n.startsWith(`${block}.resnets.`)).map((n) => n.split('.')[3])).size;
    expect(['down_blocks.0', 'down_blocks.1', 'down_blocks.2'].map(resnets)).toEqual([2, 3, 1]);
    expect(['up_blocks.0', 'up_blocks.1', 'up_blocks.2'].map(resnets)).toEqual([2, 4, 3]);
  });
});
