// Bounds before allocation (issue 13, item 1): every number of every config is checked against
// its range in config-bounds.ts as it is parsed — each field, table-driven — and the issue's
// examples fail at once through the CLI with exit 2, before any network is built.

import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { parseCLIPTextConfig } from '../../src/models/clip.js';
import { CONFIG_BOUNDS } from '../../src/models/config-bounds.js';
import { parseUNetConfig } from '../../src/models/unet.js';
import { parseVaeConfig } from '../../src/models/vae.js';
import { parseSchedulerConfig } from '../../src/pipeline/scheduler.js';
import { CLIPTokenizer } from '../../src/pipeline/tokenizer.js';
import { expectUsageError, runMain } from '../cli/run.js';
import { readConfigs, TINY } from '../helpers/fixtures.js';
import { editJson, linkTiny } from './model-folder.js';

type Json = Record<string, unknown>;
const base = readConfigs(TINY) as unknown as Record<'unet' | 'vae' | 'textEncoder' | 'scheduler', Json>;

const read = (f: string): string => readFileSync(join(TINY, 'tokenizer', f), 'utf8');
const tokenizerFiles = { vocab: read('vocab.json'), merges: read('merges.txt'), specialTokensMap: read('special_tokens_map.json') };
const tokenizerConfig = JSON.parse(read('tokenizer_config.json')) as Json;

/** Each bounded component: its parser over TINY's config with `key` set to `value`. */
const PARSERS: Record<keyof typeof CONFIG_BOUNDS, (key: string, value: unknown) => Promise<unknown>> = {
  unet: async (k, v) => parseUNetConfig(withValue(base.unet, k, v)),
  vae: async (k, v) => parseVaeConfig(withValue(base.vae, k, v)),
  text_encoder: async (k, v) => parseCLIPTextConfig(withValue(base.textEncoder, k, v)),
  scheduler: async (k, v) => parseSchedulerConfig(withValue(base.scheduler, k, v)),
  tokenizer: async (k, v) => new CLIPTokenizer({ ...tokenizerFiles, tokenizerConfig: withValue(tokenizerConfig, k, v) }, 'tok'),
};

/** The config with `key` set: in a per-level list, its first entry (the others stay valid). */
function withValue(config: Json, key: string, value: unknown): Json {
  const old = config[key];
  return { ...config, [key]: Array.isArray(old) ? [value, ...old.slice(1)] : value };
}

async function usageMessage(work: () => Promise<unknown>): Promise<string> {
  const e = await work().then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected a UsageError').toBeInstanceOf(UsageError);
  return (e as Error).message;
}

describe('each field of each config against its range', () => {
  const cases = Object.entries(CONFIG_BOUNDS).flatMap(([component, bounds]) =>
    Object.entries(bounds)
      .filter(([key]) => key !== 'levels')
      .map(([key, { min, max }]) => ({ component: component as keyof typeof CONFIG_BOUNDS, key, min, max })),
  );

  it.each(cases)('$component $key: above $max, below $min, 1e9, NaN-like and non-numbers are refused, naming the key and range', async ({ component, key, min, max }) => {
    const integer = Number.isInteger(min) && Number.isInteger(max);
    const bad: unknown[] = [1e9, max * 2 + 1, integer ? min - 1 : min / 2, '7', null, [1], { n: 1 }];
    if (integer) bad.push(max + 1, min + 0.5);
    for (const value of bad) {
      const message = await usageMessage(() => PARSERS[component](key, value));
      // Missing-key messages aside (null counts as a value), each names the key and its range.
      expect(message, `${component}.${key} = ${JSON.stringify(value)}`).toMatch(new RegExp(`"${key}" is .*expected .*\\[${min}, ${max}\\]`));
    }
  });

  it('docs/LIMITS.md lists exactly these ranges', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../docs/LIMITS.md', import.meta.url)), 'utf8');
    const component = (file: string): string => file.replace(/\{,_2\}/, '').split('/')[0]!;
    const listed = [...doc.matchAll(/^\| (\S+) \| `(\w+)` \| ([^|]+) \| ([^|]+) \|/gm)].map(([, file, key, min, max]) => [component(file!), key, Number(min), Number(max)]);
    const bounds = Object.entries(CONFIG_BOUNDS).flatMap(([c, b]) => Object.entries(b).map(([key, { min, max }]) => [c, key, min, max]));
    expect(listed).toEqual(bounds);
  });

  it("SDXL-Turbo's own configs are inside every range (sdxl-turbo-layout)", () => {
    const real = readConfigs(join(TINY, '../sdxl-turbo-layout'));
    expect(() => parseUNetConfig(real.unet)).not.toThrow();
    expect(() => parseVaeConfig(real.vae)).not.toThrow();
    expect(() => parseCLIPTextConfig(real.textEncoder)).not.toThrow();
    expect(() => parseCLIPTextConfig(real.textEncoder2)).not.toThrow();
    expect(() => parseSchedulerConfig(real.scheduler)).not.toThrow();
  });

  it('the levels: block_out_channels of 9 levels or none', async () => {
    for (const list of [Array<number>(9).fill(32), []]) {
      expect(await usageMessage(async () => parseUNetConfig({ ...base.unet, block_out_channels: list }))).toContain('"block_out_channels" is');
      expect(await usageMessage(async () => parseVaeConfig({ ...base.vae, block_out_channels: list }))).toContain('expected a list of [1, 8] integers');
    }
  });
});

describe('cross-checks are bad input', () => {
  const cases: Array<[string, () => unknown, string]> = [
    ['heads divide the hidden size', () => parseCLIPTextConfig({ ...base.textEncoder, num_attention_heads: 5 }), 'hidden_size 24 is not a multiple of num_attention_heads 5'],
    ['groups divide the UNet channels', () => parseUNetConfig({ ...base.unet, norm_num_groups: 7 }), 'does not split into norm_num_groups = 7'],
    ['heads divide the UNet channels', () => parseUNetConfig({ ...base.unet, attention_head_dim: [1, 3, 2] }), 'block_out_channels[1] = 32 does not split into attention_head_dim[1] = 3 heads'],
    ['groups divide the VAE channels', () => parseVaeConfig({ ...base.vae, norm_num_groups: 3 }), 'does not split into norm_num_groups = 3'],
    ['block types per level', () => parseUNetConfig({ ...base.unet, down_block_types: ['DownBlock2D'] }), '3 block_out_channels but 1 down_block_types'],
    ['time ids leave room for text embeds', () => parseUNetConfig({ ...base.unet, projection_class_embeddings_input_dim: 48 }), 'leaves no room for text embeds'],
    ['beta_start ≤ beta_end', () => parseSchedulerConfig({ ...base.scheduler, beta_start: 0.1, beta_end: 0.01 }), '"beta_start" 0.1 is above "beta_end" 0.01'],
  ];
  it.each(cases)('%s', async (_, parse, message) => {
    expect(await usageMessage(async () => parse())).toContain(message);
  });
});

describe("the issue's examples through the CLI: exit 2 at once, one line naming the file and the key", () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'sdxl-configs-test-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const examples: Array<[string, string, (j: Json) => void, string]> = [
    ['num_train_timesteps 1e9', 'scheduler/scheduler_config.json', (j) => (j.num_train_timesteps = 1e9), '"num_train_timesteps" is 1000000000, expected an integer in [2, 100000]'],
    ['transformer_layers_per_block [1e9, …]', 'unet/config.json', (j) => (j.transformer_layers_per_block = [1e9, 2, 3]), '"transformer_layers_per_block" is [1000000000,2,3]'],
    ['num_hidden_layers 1e9', 'text_encoder_2/config.json', (j) => (j.num_hidden_layers = 1e9), '"num_hidden_layers" is 1000000000, expected an integer in [1, 128]'],
    ['model_max_length 1e9', 'tokenizer/tokenizer_config.json', (j) => (j.model_max_length = 1e9), '"model_max_length" is 1000000000, expected an integer in [2, 1024]'],
    ['model_max_length above max_position_embeddings', 'tokenizer_2/tokenizer_config.json', (j) => (j.model_max_length = 78), "model_max_length 78 is above"],
    ['a VAE with 1e9 channels', 'vae/config.json', (j) => (j.latent_channels = 1e9), '"latent_channels" is 1000000000'],
  ];
  it.each(examples)('%s', async (name, file, edit, message) => {
    const dir = await linkTiny(join(tmp, name.replace(/\W+/g, '-')));
    await editJson(dir, file, edit);
    const run = await runMain(['generate', '--model', dir, '--prompt', 'x', '--out', join(tmp, 'o.png')]);
    expectUsageError(run, `${dir}/${file}`, message);
  });
});
