// The VAE built from the real sdxl-turbo config declares exactly the tensors of the real
// checkpoint (names and shapes); plus the config parsing: defaults, and a clear error for
// everything outside AutoencoderKL as SDXL uses it. No GPU, no weights.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AutoencoderKL, parseVaeConfig } from '../../src/models/vae.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';

const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;
const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));
const realConfig = readJson(`${LAYOUT}/vae/config.json`) as Record<string, unknown>;

interface Manifest {
  components: Record<string, { class: string; num_tensors: number; num_parameters: number; tensors: Array<{ name: string; shape: number[] }> }>;
}

describe('VAE against the real weight manifest', () => {
  it('declares exactly the manifest tensors, names and shapes', () => {
    const entry = (readJson(`${LAYOUT}/weights-manifest.json`) as Manifest).components['vae']!;
    expect(entry.class).toBe('AutoencoderKL');
    const { registry } = AutoencoderKL.create(parseVaeConfig(realConfig));
    const expected = new Map(entry.tensors.map((t) => [t.name, t.shape]));
    const declared = new Map([...registry.expected()].map(([n, s]) => [n, [...s]]));
    expect(declared.size).toBe(entry.num_tensors);
    expect([...declared.keys()].sort()).toEqual([...expected.keys()].sort());
    expect(declared).toEqual(expected);
    const parameters = [...declared.values()].reduce((sum, shape) => sum + shape.reduce((a, b) => a * b, 1), 0);
    expect(parameters).toBe(entry.num_parameters);
    expect(registry.tolerated.size).toBe(0);
  });

  it('parses the real config', () => {
    expect(parseVaeConfig(realConfig)).toEqual({
      inChannels: 3,
      outChannels: 3,
      latentChannels: 4,
      blockOutChannels: [128, 256, 512, 512],
      layersPerBlock: 2,
      normNumGroups: 32,
      scalingFactor: 0.13025,
      forceUpcast: true,
      midBlockAddAttention: true,
    });
    const model = AutoencoderKL.create(parseVaeConfig(realConfig));
    expect(model.scale).toBe(8);
  });

  it('the tiny fixture config has the same structure at small sizes (with explicit null latent statistics)', () => {
    const tiny = readJson(`${TINY}/vae/config.json`) as Record<string, unknown>;
    expect(tiny['latents_mean']).toBeNull();
    expect(parseVaeConfig(tiny)).toMatchObject({ blockOutChannels: [8, 16, 32, 32], normNumGroups: 4, layersPerBlock: 2, scalingFactor: 0.13025 });
  });

  it('without mid-block attention declares no attention weights', () => {
    const { registry } = AutoencoderKL.create(parseVaeConfig({ ...realConfig, mid_block_add_attention: false }));
    expect([...registry.expected().keys()].filter((n) => n.includes('attentions'))).toEqual([]);
    expect(registry.expected().size).toBe(248 - 2 * 10);
  });
});

describe('VAE config parsing', () => {
  const parse = (changes: Record<string, unknown>) => () => parseVaeConfig({ ...realConfig, ...changes }, 'vae/config.json');

  it('rejects every setting outside AutoencoderKL as SDXL uses it, naming the key and value', () => {
    expect(parse({ _class_name: 'AutoencoderTiny' })).toThrow(/vae\/config\.json: "_class_name" is "AutoencoderTiny"/);
    expect(parse({ down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'AttnDownEncoderBlock2D'] })).toThrow(/"down_block_types" is \[.*"AttnDownEncoderBlock2D"\], expected a list of "DownEncoderBlock2D"/);
    expect(parse({ up_block_types: ['UpDecoderBlock2D'] })).toThrow(/4 block_out_channels but 4 down_block_types and 1 up_block_types/);
    expect(parse({ act_fn: 'gelu' })).toThrow(/"act_fn" is "gelu", expected "silu"/);
    expect(parse({ latents_mean: [0, 0, 0, 0] })).toThrow(/"latents_mean" is \[0,0,0,0\], expected null/);
    expect(parse({ shift_factor: 0.0609 })).toThrow(/"shift_factor" is 0\.0609, expected null/);
    expect(parse({ use_quant_conv: false })).toThrow(/"use_quant_conv" is false, expected true/);
    expect(parse({ use_post_quant_conv: false })).toThrow(/"use_post_quant_conv" is false/);
    expect(parse({ norm_num_groups: 48 })).toThrow(/block_out_channels\[0\] = 128 does not split into norm_num_groups = 48/);
    expect(parse({ layers_per_block: [2, 2, 2, 2] })).toThrow(/"layers_per_block" is \[2,2,2,2\], expected an integer in \[1, 16\]/);
    expect(parse({ scaling_factor: 0 })).toThrow(/"scaling_factor" is 0, expected a number in \[0.000001, 1000\]/);
    expect(parse({ force_upcast: 'yes' })).toThrow(/"force_upcast" is "yes", expected true or false/);
  });

  it('takes diffusers defaults for keys left out', () => {
    const { scaling_factor: _s, force_upcast: _f, layers_per_block: _l, ...rest } = realConfig;
    expect(parseVaeConfig(rest)).toMatchObject({ scalingFactor: 0.18215, forceUpcast: true, layersPerBlock: 1, midBlockAddAttention: true });
  });
});
