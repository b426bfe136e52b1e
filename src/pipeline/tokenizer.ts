// CLIP's BPE tokenizer as diffusers' SDXL pipelines run it: transformers' slow CLIPTokenizer
// without ftfy, built from a model folder's vocab.json, merges.txt, tokenizer_config.json and
// special_tokens_map.json (given as contents, so it runs in the browser too).
//
// 1. Added tokens (tokenizer_config's added_tokens_decoder: <|startoftext|>, <|endoftext|>,
//    and "!" in SDXL's tokenizer_2) are cut out of the raw text and map to their ids.
// 2. Every other chunk is cleaned like transformers' BasicTokenizer(strip_accents=False,
//    do_split_on_punc=False), split by CLIP's regex, mapped byte → unicode (GPT-2) and merged
//    by rank with "</w>" on the last symbol (@huggingface/tokenizers' BPE model).
// 3. BOS + up to maxLength − 2 tokens + EOS, padded with the tokenizer's own pad token.

import { BPE } from '@huggingface/tokenizers';
import { excerpt } from '../errors.js';
import { ConfigReader } from '../models/config.js';
import { CONFIG_BOUNDS } from '../models/config-bounds.js';

type Json = Record<string, unknown>;

/** The tokenizer files of one model folder: text as read, JSON also accepted parsed. */
export interface TokenizerFiles {
  readonly vocab: string | Json;
  readonly merges: string;
  readonly tokenizerConfig: string | Json;
  readonly specialTokensMap: string | Json;
}

// CLIPTokenizer reads at most this many merges (its vocabulary is 256 bytes × 2 + merges + 2).
const MAX_MERGES = 49152 - 256 - 2;
// CLIP's pre-tokenizer pattern (transformers compiles it with re.IGNORECASE).
const PIECES = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;
// CLIPTokenizer's bpe() returns these two unchanged (no "</w>") when the regex yields them.
const BPE_VERBATIM = ['<|startoftext|>', '<|endoftext|>'];

export class CLIPTokenizer {
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  private readonly bpe: BPE;
  private readonly vocab: ReadonlyMap<string, number>;
  private readonly added: ReadonlyMap<string, number>;
  private readonly addedPattern: RegExp | null;

  constructor(files: TokenizerFiles, where = 'tokenizer') {
    const config = parseJson(files.tokenizerConfig, `${where}/tokenizer_config.json`);
    this.maxLength = new ConfigReader(config, `${where}/tokenizer_config.json`, CONFIG_BOUNDS.tokenizer).int('model_max_length');
    const vocab = parseJson(files.vocab, `${where}/vocab.json`);
    for (const [token, id] of Object.entries(vocab)) {
      if (!Number.isSafeInteger(id)) throw new Error(`${where}/vocab.json: id of ${excerpt(JSON.stringify(token))} is ${excerpt(JSON.stringify(id) ?? String(id))}`);
    }
    this.vocab = new Map(Object.entries(vocab as Record<string, number>));
    const specials = parseJson(files.specialTokensMap, `${where}/special_tokens_map.json`);

    const added = new Map<string, number>();
    for (const [id, entry] of Object.entries((config.added_tokens_decoder ?? {}) as Record<string, Json>)) {
      const content = entry.content;
      if (typeof content !== 'string' || !/^\d+$/.test(id)) throw new Error(`${where}/tokenizer_config.json: bad added token ${excerpt(id)}: ${excerpt(JSON.stringify(entry) ?? String(entry))}`);
      if (entry.single_word === true) throw new Error(`${where}/tokenizer_config.json: added token ${excerpt(JSON.stringify(content))} is single_word, which is not supported`);
      added.set(content, Number(id));
    }
    const special = (name: string): { content: string; id: number } => {
      const raw = specials[name] ?? config[name];
      const content = typeof raw === 'object' && raw !== null ? (raw as Json).content : raw;
      if (typeof content !== 'string') throw new Error(`${where}: no ${name} in special_tokens_map.json or tokenizer_config.json`);
      const id = added.get(content) ?? this.vocab.get(content);
      if (id === undefined) throw new Error(`${where}: ${name} ${excerpt(JSON.stringify(content))} is neither an added token nor in vocab.json`);
      added.set(content, id); // transformers adds every special token to the added tokens
      return { content, id };
    };
    this.bosId = special('bos_token').id;
    this.eosId = special('eos_token').id;
    this.padId = special('pad_token').id;
    const unk = special('unk_token').content;
    this.added = added;
    // Leftmost match, longest first where several start at one place (transformers' trie).
    const alternatives = [...added.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.addedPattern = alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'gu') : null;


    const merges = parseMerges(files.merges, `${where}/merges.txt`);
    this.bpe = new BPE({
      type: 'BPE',
      vocab: vocab as Record<string, number>,
      merges,
      end_of_word_suffix: '</w>',
      unk_token: unk,
      ignore_merges: false,
    });
  }

  /** The token strings of `text`, without BOS/EOS (transformers' tokenizer.tokenize). */
  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const chunk of this.splitAdded(text)) {
      if (this.added.has(chunk)) {
        out.push(chunk);
        continue;
      }
      for (const [piece] of basicClean(chunk).matchAll(PIECES)) {
        if (BPE_VERBATIM.includes(piece)) out.push(piece);
        else out.push(...this.bpe.encode([byteLevel(piece)]));
      }
    }
    return out;
  }

  /** BOS + every token id + EOS, without truncation or padding. */
  encodeUntruncated(text: string): Int32Array {
    return Int32Array.from([this.bosId, ...this.tokenize(text).map((t) => this.id(t)), this.eosId]);
  }

  /** The maxLength ids the text encoder gets: truncated to BOS + maxLength − 2 tokens + EOS, then padded. */
  encode(text: string): Int32Array {
    const ids = this.encodeUntruncated(text);
    const out = new Int32Array(this.maxLength).fill(this.padId);
    const kept = Math.min(ids.length - 2, this.maxLength - 2);
    out.set(ids.subarray(0, kept + 1));
    out[kept + 1] = this.eosId;
    return out;
  }

  private id(token: string): number {
    const id = this.added.get(token) ?? this.vocab.get(token);
    if (id === undefined) throw new Error(`tokenizer: token ${excerpt(JSON.stringify(token))} is not in the vocabulary`);
    return id;
  }

  /** The text cut at added tokens, which come out as chunks of their own. */
  private splitAdded(text: string): string[] {
    if (!this.addedPattern) return [text];
    const chunks: string[] = [];
    let last = 0;
    for (const m of text.matchAll(this.addedPattern)) {
      if (m.index > last) chunks.push(text.slice(last, m.index));
      chunks.push(m[0]);
      last = m.index + m[0].length;
    }
    if (last < text.length) chunks.push(text.slice(last));
    return chunks;
  }
}

const SPACE_SEPARATOR = /\p{Zs}/u;
const OTHER = /\p{C}/u; // control, format, surrogate, private use, unassigned

/**
 * transformers' BasicTokenizer(strip_accents=False, do_split_on_punc=False) as CLIPTokenizer
 * uses it without ftfy, joined with single spaces: drop NUL, U+FFFD and category C except
 * \t \n \r; other whitespace (category Zs included) → space; spaces around CJK ideographs;
 * NFC; split on whitespace; lowercase.
 */
function basicClean(text: string): string {
  let cleaned = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\t' || ch === '\n' || ch === '\r' || SPACE_SEPARATOR.test(ch)) cleaned += ' ';
    else if (cp === 0 || cp === 0xfffd || OTHER.test(ch)) continue;
    else if (isCjkIdeograph(cp)) cleaned += ` ${ch} `;
    else cleaned += ch;
  }
  return cleaned
    .normalize('NFC')
    .split(/\s+/u)
    .filter((word) => word !== '')
    .map((word) => word.toLowerCase())
    .join(' ');
}

/** BasicTokenizer's "Chinese character" blocks: CJK ideographs, not kana or hangul. */
function isCjkIdeograph(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

// GPT-2's reversible byte → character map: printable Latin-1 bytes stand for themselves, the
// others (controls, space, …) for the characters from U+0100 on, in byte order.
const BYTE_CHARS: string[] = (() => {
  const chars: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars.push(String.fromCodePoint(printable ? b : next++));
  }
  return chars;
})();

const utf8 = new TextEncoder();

/** The merges CLIPTokenizer reads: every line after the "#version" header, at most MAX_MERGES. */
function parseMerges(text: string, where: string): Array<[string, string]> {
  return text
    .trim()
    .split('\n')
    .slice(1, MAX_MERGES + 1)
    .map((line, i): [string, string] => {
      const pair = line.trim().split(/\s+/);
      if (pair.length !== 2) throw new Error(`${where}: line ${i + 2} is ${excerpt(JSON.stringify(line))}, expected two symbols`);
      return pair as [string, string];
    });
}

/**
 * CLIP's vocab.json, which its merges determine (openai/CLIP's simple_tokenizer builds it so):
 * the 256 byte characters in code-point order, each again with "</w>", every merge's result,
 * then <|startoftext|> and <|endoftext|>. So only merges.txt needs to ship.
 */
export function clipVocabFromMerges(merges: string, where = 'merges.txt'): Record<string, number> {
  const bytes = [...BYTE_CHARS].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  const tokens = [...bytes, ...bytes.map((b) => `${b}</w>`), ...parseMerges(merges, where).map(([a, b]) => a + b), '<|startoftext|>', '<|endoftext|>'];
  return Object.fromEntries(tokens.map((t, id) => [t, id]));
}

function byteLevel(piece: string): string {
  let out = '';
  for (const b of utf8.encode(piece)) out += BYTE_CHARS[b];
  return out;
}

function parseJson(value: string | Json, where: string): Json {
  let parsed: unknown = value;
  try {
    if (typeof value === 'string') parsed = JSON.parse(value);
  } catch (e) {
    throw new Error(`${where}: invalid JSON (${excerpt((e as Error).message, 100)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${where}: not a JSON object`);
  return parsed as Json;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
