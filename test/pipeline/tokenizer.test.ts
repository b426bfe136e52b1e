// CLIP tokenizers vs transformers' slow CLIPTokenizer as SDXL's pipeline called it on 42
// prompts (tiny-sdxl-reference/tokens.json), built from the tiny-sdxl tokenizer folders.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLIPTokenizer, type TokenizerFiles } from '../../src/pipeline/tokenizer.js';
import { FIXTURES, TINY, TINY_REF } from '../helpers/fixtures.js';

type Name = 'tokenizer' | 'tokenizer_2';
interface Expected {
  input_ids: number[];
  untruncated_input_ids: number[];
  tokens: string[];
}
const reference = JSON.parse(readFileSync(`${TINY_REF}/tokens.json`, 'utf8')) as {
  tokenizer_meta: Record<Name, { pad_token_id: number; model_max_length: number }>;
  cases: ({ prompt: string } & Record<Name, Expected>)[];
};

function files(name: Name, configDir = TINY): TokenizerFiles {
  const read = (dir: string, file: string): string => readFileSync(`${dir}/${name}/${file}`, 'utf8');
  return {
    vocab: read(TINY, 'vocab.json'),
    merges: read(TINY, 'merges.txt'),
    tokenizerConfig: read(configDir, 'tokenizer_config.json'),
    specialTokensMap: read(configDir, 'special_tokens_map.json'),
  };
}

for (const name of ['tokenizer', 'tokenizer_2'] as const) {
  describe(`${name}: every prompt of tokens.json`, () => {
    const tokenizer = new CLIPTokenizer(files(name), name);

    it('reads its length and special ids from the files (pad differs between the two)', () => {
      const meta = reference.tokenizer_meta[name];
      expect(tokenizer.maxLength).toBe(meta.model_max_length);
      expect([tokenizer.bosId, tokenizer.eosId, tokenizer.padId]).toEqual([49406, 49407, meta.pad_token_id]);
    });

    reference.cases.forEach(({ prompt, [name]: expected }, i) => {
      it(`#${i} ${JSON.stringify(prompt).slice(0, 60)}`, () => {
        // Token ids must be exact: any difference is a different prompt to the text encoder.
        expect(['<|startoftext|>', ...tokenizer.tokenize(prompt), '<|endoftext|>']).toEqual(expected.tokens);
        expect(Array.from(tokenizer.encodeUntruncated(prompt))).toEqual(expected.untruncated_input_ids);
        expect(Array.from(tokenizer.encode(prompt))).toEqual(expected.input_ids);
      });
    });
  });
}

describe('tokenizer construction and behaviour beyond the fixture', () => {
  it('builds from sdxl-turbo’s real configs with the same result', () => {
    for (const name of ['tokenizer', 'tokenizer_2'] as const) {
      const real = new CLIPTokenizer(files(name, `${FIXTURES}sdxl-turbo-layout`), name);
      const c = reference.cases[3]!; // "Hello, world!": "!" is an added token only in tokenizer_2
      expect(Array.from(real.encode(c.prompt))).toEqual(c[name].input_ids);
    }
  });

  it('takes pad and length from the files, not from constants', () => {
    const base = files('tokenizer');
    const config = JSON.parse(base.tokenizerConfig as string) as Record<string, unknown>;
    const specials = JSON.parse(base.specialTokensMap as string) as Record<string, unknown>;
    const tokenizer = new CLIPTokenizer({ ...base, tokenizerConfig: { ...config, model_max_length: 8 }, specialTokensMap: { ...specials, pad_token: 'cat' } });
    // "cat" without </w> is its own vocab entry (1481), unlike the word "cat</w>" (2368)
    expect(Array.from(tokenizer.encode('a photo'))).toEqual([49406, 320, 1125, 49407, 1481, 1481, 1481, 1481]);
    expect(Array.from(tokenizer.encode('a b c d e f g h'))).toEqual([49406, 320, 321, 322, 323, 324, 325, 49407]);
  });

  it('special-token text in other case reaches the special ids through CLIP’s regex', () => {
    const tokenizer = new CLIPTokenizer(files('tokenizer'));
    // not an added-token match (case differs), but lowercased and kept whole by CLIPTokenizer.bpe
    expect(Array.from(tokenizer.encodeUntruncated('A <|EndOfText|>'))).toEqual([49406, 320, 49407, 49407]);
  });

  it('rejects malformed files with the file and the problem named', () => {
    const base = files('tokenizer');
    const config = JSON.parse(base.tokenizerConfig as string) as Record<string, unknown>;
    const build = (patch: Partial<TokenizerFiles>) => () => new CLIPTokenizer({ ...base, ...patch }, 'tok');
    expect(build({ tokenizerConfig: { ...config, model_max_length: undefined } })).toThrow(/tok\/tokenizer_config.json: missing required key "model_max_length"/);
    expect(build({ specialTokensMap: { pad_token: '<|nope|>' } })).toThrow(/tok: pad_token "<\|nope\|>" is neither an added token nor in vocab.json/);
    expect(build({ merges: '#version: 0.2\ni n\nbad line here' })).toThrow(/tok\/merges.txt: line 3/);
    expect(build({ vocab: '[1, 2]' })).toThrow(/tok\/vocab.json: not a JSON object/);
    const singleWord = { ...config, added_tokens_decoder: { 49406: { content: '<|startoftext|>', single_word: true } } };
    expect(build({ tokenizerConfig: singleWord })).toThrow(/single_word/);
  });
});
