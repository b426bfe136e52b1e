// The text encoders built from the real sdxl-turbo configs declare exactly the tensors of
// the real checkpoints (names and shapes); plus the config parsing and EOS pooling rules.
// No GPU and no weights involved.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLIPTextModel, CLIPTextModelWithProjection, eosPositions, parseCLIPTextConfig } from '../../src/models/clip.js';
import { FIXTURES } from '../helpers/fixtures.js';

const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;
const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

interface Manifest {
  components: Record<string, { class: string; tensors: Array<{ name: string; shape: number[] }> }>;
}
const manifest = readJson(`${LAYOUT}/weights-manifest.json`) as Manifest;

describe('CLIP text encoders against the real weight manifest', () => {
  for (const component of ['text_encoder', 'text_encoder_2'] as const) {
    it(`${component} declares exactly the manifest's tensors`, () => {
      const config = parseCLIPTextConfig(readJson(`${LAYOUT}/${component}/config.json`), `${component}/config.json`);
      const { registry } = component === 'text_encoder' ? CLIPTextModel.create(config, component) : CLIPTextModelWithProjection.create(config, component);
      const entry = manifest.components[component]!;
      expect(entry.class).toBe(component === 'text_encoder' ? 'CLIPTextModel' : 'CLIPTextModelWithProjection');
      const expected = new Map(entry.tensors.map((t) => [t.name, t.shape]));
      const declared = new Map([...registry.expected()].map(([n, s]) => [n, [...s]]));
      expect([...declared.keys()].sort()).toEqual([...expected.keys()].sort());
      expect(declared).toEqual(expected);
      // Older checkpoints also carry this buffer; it must load, not fail as unexpected.
      expect(registry.tolerated).toEqual(new Set(['text_model.embeddings.position_ids']));
    });
  }

  it('parses the real configs into the known architectures', () => {
    const l = parseCLIPTextConfig(readJson(`${LAYOUT}/text_encoder/config.json`));
    const g = parseCLIPTextConfig(readJson(`${LAYOUT}/text_encoder_2/config.json`));
    expect(l).toEqual({
      hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12, hiddenAct: 'quick_gelu',
      layerNormEps: 1e-5, maxPositionEmbeddings: 77, vocabSize: 49408, projectionDim: 768, eosTokenId: 2,
    });
    expect(g).toMatchObject({ hiddenSize: 1280, intermediateSize: 5120, numHiddenLayers: 32, numAttentionHeads: 20, hiddenAct: 'gelu', projectionDim: 1280 });
  });
});

describe('CLIP text config parsing', () => {
  const base = readJson(`${LAYOUT}/text_encoder/config.json`) as Record<string, unknown>;

  it('rejects unsupported activations, missing sizes and inconsistent heads with the key named', () => {
    expect(() => parseCLIPTextConfig({ ...base, hidden_act: 'gelu_new' }, 'te/config.json')).toThrow(/te\/config\.json: "hidden_act" is "gelu_new", expected one of "quick_gelu", "gelu"/);
    const { hidden_size: _, ...noHidden } = base;
    expect(() => parseCLIPTextConfig(noHidden, 'te/config.json')).toThrow(/te\/config\.json: missing required key "hidden_size"/);
    expect(() => parseCLIPTextConfig({ ...base, num_attention_heads: 7 })).toThrow(/hidden_size 768 is not a multiple of num_attention_heads 7/);
    expect(() => parseCLIPTextConfig({ ...base, layer_norm_eps: 0 })).toThrow(/"layer_norm_eps" is 0, expected a number in \[1e-12, 0.1\]/);
    expect(() => parseCLIPTextConfig({ ...base, model_type: 'clip_vision_model' })).toThrow(/"model_type"/);
    expect(() => parseCLIPTextConfig([])).toThrow(/not a JSON object/);
  });

  it('falls back to transformers defaults for keys a config leaves out', () => {
    const { hidden_act: _a, layer_norm_eps: _e, eos_token_id: _i, projection_dim: _p, ...minimal } = base;
    expect(parseCLIPTextConfig(minimal)).toMatchObject({ hiddenAct: 'quick_gelu', layerNormEps: 1e-5, eosTokenId: 2, projectionDim: 512 });
  });
});

describe('EOS pooling position', () => {
  it('legacy eos_token_id 2 takes the first argmax of each row', () => {
    // Row 0: BOS, words, EOS, EOS padding (tokenizer 1); row 1: EOS then "!" (id 0) padding (tokenizer 2);
    // row 2: a literal <|endoftext|> mid-prompt and the EOS at the end.
    const ids = Int32Array.from([49406, 320, 49407, 49407, 49407, 49406, 49407, 0, 0, 0, 49406, 49407, 320, 49407, 0]);
    expect(eosPositions(ids, 5, 2)).toEqual([2, 1, 1]);
  });

  it('other eos_token_id: the first position holding it, 0 when absent', () => {
    const ids = Int32Array.from([5, 9, 7, 9, 1, 5, 5, 5, 3, 7, 7, 1]);
    expect(eosPositions(ids, 4, 7)).toEqual([2, 0, 1]);
  });
});
