// The SDXL text encoders: transformers' CLIPTextModel (CLIP ViT-L/14, `text_encoder`) and
// CLIPTextModelWithProjection (OpenCLIP bigG/14, `text_encoder_2`), module for module, as
// the SDXL pipeline calls them: causal mask, no attention mask, every hidden state
// available. SDXL uses `penultimate` (hidden_states[-2], no final_layer_norm) of both and
// the projection model's `textEmbeds`.

import { attention } from '../ops/attention.js';
import { add } from '../ops/binary.js';
import { gelu, quickGelu } from '../ops/elementwise.js';
import { embedding } from '../ops/embedding.js';
import { linear } from '../ops/matmul.js';
import { layerNorm } from '../ops/layernorm.js';
import type { Tensor } from '../tensor.js';
import { ConfigReader } from './config.js';
import { type Weight, WeightRegistry, WeightScope } from './weights.js';

export type CLIPActivation = 'quick_gelu' | 'gelu';

/** transformers' CLIPTextConfig, the fields the text model uses. */
export interface CLIPTextConfig {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  /** quick_gelu: x·σ(1.702x) (CLIP-L); gelu: exact erf GELU (bigG). */
  readonly hiddenAct: CLIPActivation;
  readonly layerNormEps: number;
  readonly maxPositionEmbeddings: number;
  readonly vocabSize: number;
  /** Width of text_projection's output (the projection model only). */
  readonly projectionDim: number;
  /** 2 is the legacy value of old configs: the EOS is then found as argmax(ids). */
  readonly eosTokenId: number;
}

/** Parses a text encoder's config.json. The sizes are required (a file without them is the
 *  wrong file); the rest fall back to transformers' CLIPTextConfig defaults. */
export function parseCLIPTextConfig(json: unknown, where = 'text encoder config.json'): CLIPTextConfig {
  const c = new ConfigReader(json, where);
  c.oneOf('model_type', ['clip_text_model'], 'clip_text_model');
  const config: CLIPTextConfig = {
    hiddenSize: c.int('hidden_size'),
    intermediateSize: c.int('intermediate_size'),
    numHiddenLayers: c.int('num_hidden_layers'),
    numAttentionHeads: c.int('num_attention_heads'),
    hiddenAct: c.oneOf('hidden_act', ['quick_gelu', 'gelu'], 'quick_gelu'),
    layerNormEps: c.positive('layer_norm_eps', 1e-5),
    maxPositionEmbeddings: c.int('max_position_embeddings', 77),
    vocabSize: c.int('vocab_size', 49408),
    projectionDim: c.int('projection_dim', 512),
    eosTokenId: c.int('eos_token_id', 2, 0),
  };
  if (config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new Error(`${where}: hidden_size ${config.hiddenSize} is not a multiple of num_attention_heads ${config.numAttentionHeads}`);
  }
  return config;
}

/**
 * The pooling position of each row of `ids` (B × L): transformers' CLIPTextTransformer takes
 * argmax(ids) (the first highest id, i.e. the first <|endoftext|> of the CLIP vocabulary)
 * when eos_token_id is the legacy 2, else the first position holding eos_token_id (0 when
 * there is none, as torch's argmax of an all-false row gives).
 */
export function eosPositions(ids: Int32Array, sequenceLength: number, eosTokenId: number): number[] {
  const positions: number[] = [];
  for (let row = 0; row < ids.length / sequenceLength; row++) {
    const tokens = ids.subarray(row * sequenceLength, (row + 1) * sequenceLength);
    let at = 0;
    if (eosTokenId === 2) {
      for (let i = 1; i < tokens.length; i++) if (tokens[i]! > tokens[at]!) at = i;
    } else {
      at = Math.max(0, tokens.indexOf(eosTokenId));
    }
    positions.push(at);
  }
  return positions;
}

export interface CLIPTextOptions {
  /** Tokens per row (default max_position_embeddings, the 77 the tokenizers pad to). */
  readonly sequenceLength?: number;
  /** Keep every layer's output in `hiddenStates` (default false: only the penultimate). */
  readonly outputHiddenStates?: boolean;
}

/** Every tensor is the caller's to release; `penultimate` is also an entry of
 *  `hiddenStates` when those are kept (releasing a tensor twice is harmless). */
export interface CLIPTextOutput {
  /** hidden_states[0] = embeddings, [i] = layer i's output; null unless asked for. */
  readonly hiddenStates: Tensor[] | null;
  /** hidden_states[-2]: (B, L, C), no final_layer_norm (SDXL's prompt_embeds half). */
  readonly penultimate: Tensor;
  /** final_layer_norm(last layer): (B, L, C). */
  readonly lastHiddenState: Tensor;
  /** lastHiddenState at each row's EOS position: (B, C). */
  readonly pooled: Tensor;
}

export interface CLIPTextWithProjectionOutput extends CLIPTextOutput {
  /** text_projection(pooled), no bias: (B, projection_dim) (SDXL's pooled_prompt_embeds). */
  readonly textEmbeds: Tensor;
}

/** (weight, bias) of an nn.Linear or nn.LayerNorm. */
interface Affine {
  readonly weight: Weight;
  readonly bias: Weight;
}

function linearWeights(w: WeightScope, name: string, outFeatures: number, inFeatures: number): Affine {
  return { weight: w.get(`${name}.weight`, [outFeatures, inFeatures]), bias: w.get(`${name}.bias`, [outFeatures]) };
}

function layerNormWeights(w: WeightScope, name: string, features: number): Affine {
  return { weight: w.get(`${name}.weight`, [features]), bias: w.get(`${name}.bias`, [features]) };
}

export class CLIPTextEmbeddings {
  private readonly tokenEmbedding: Weight;
  private readonly positionEmbedding: Weight;

  constructor(private readonly config: CLIPTextConfig, w: WeightScope) {
    this.tokenEmbedding = w.get('token_embedding.weight', [config.vocabSize, config.hiddenSize]);
    this.positionEmbedding = w.get('position_embedding.weight', [config.maxPositionEmbeddings, config.hiddenSize]);
    // Checkpoints written by older transformers carry the position_ids buffer (0..76).
    w.registry.tolerated.add(`${w.prefix}.position_ids`);
  }

  /** `ids` (B·L) → token + position embeddings (B, L, C). */
  forward(ids: Int32Array, sequenceLength: number): Tensor {
    const batch = ids.length / sequenceLength;
    const positions = Int32Array.from({ length: sequenceLength }, (_, i) => i);
    const tokens = embedding(this.tokenEmbedding.tensor, ids); // (B·L, C)
    const position = embedding(this.positionEmbedding.tensor, positions); // (L, C)
    const out = add(tokens.reshape([batch, sequenceLength, this.config.hiddenSize]), position); // (B, L, C)
    tokens.release();
    position.release();
    return out;
  }
}

export class CLIPAttention {
  private readonly q: Affine;
  private readonly k: Affine;
  private readonly v: Affine;
  private readonly out: Affine;

  constructor(private readonly config: CLIPTextConfig, w: WeightScope) {
    const c = config.hiddenSize;
    this.k = linearWeights(w, 'k_proj', c, c);
    this.v = linearWeights(w, 'v_proj', c, c);
    this.q = linearWeights(w, 'q_proj', c, c);
    this.out = linearWeights(w, 'out_proj', c, c);
  }

  /** Causal self-attention of `x` (B, L, C), plus `residual` (B, L, C). */
  forward(x: Tensor, residual: Tensor): Tensor {
    const q = linear(x, this.q.weight.tensor, this.q.bias.tensor); // (B, L, C)
    const k = linear(x, this.k.weight.tensor, this.k.bias.tensor); // (B, L, C)
    const v = linear(x, this.v.weight.tensor, this.v.bias.tensor); // (B, L, C)
    const heads = attention(q, k, v, { heads: this.config.numAttentionHeads, causal: true }); // (B, L, C)
    q.release();
    k.release();
    v.release();
    const out = linear(heads, this.out.weight.tensor, this.out.bias.tensor, { residual }); // (B, L, C)
    heads.release();
    return out;
  }
}

export class CLIPMLP {
  private readonly fc1: Affine;
  private readonly fc2: Affine;

  constructor(private readonly config: CLIPTextConfig, w: WeightScope) {
    this.fc1 = linearWeights(w, 'fc1', config.intermediateSize, config.hiddenSize);
    this.fc2 = linearWeights(w, 'fc2', config.hiddenSize, config.intermediateSize);
  }

  /** fc2(act(fc1(x))) + residual, all (B, L, C). */
  forward(x: Tensor, residual: Tensor): Tensor {
    const h = linear(x, this.fc1.weight.tensor, this.fc1.bias.tensor); // (B, L, I)
    const a = this.config.hiddenAct === 'quick_gelu' ? quickGelu(h) : gelu(h, 'none'); // (B, L, I)
    h.release();
    const out = linear(a, this.fc2.weight.tensor, this.fc2.bias.tensor, { residual }); // (B, L, C)
    a.release();
    return out;
  }
}

export class CLIPEncoderLayer {
  private readonly layerNorm1: Affine;
  private readonly selfAttn: CLIPAttention;
  private readonly layerNorm2: Affine;
  private readonly mlp: CLIPMLP;

  constructor(private readonly config: CLIPTextConfig, w: WeightScope) {
    this.selfAttn = new CLIPAttention(config, w.at('self_attn'));
    this.layerNorm1 = layerNormWeights(w, 'layer_norm1', config.hiddenSize);
    this.mlp = new CLIPMLP(config, w.at('mlp'));
    this.layerNorm2 = layerNormWeights(w, 'layer_norm2', config.hiddenSize);
  }

  /** Pre-norm block: h + attn(ln1(h)), then + mlp(ln2(·)). Leaves `hidden` to the caller. */
  forward(hidden: Tensor): Tensor {
    const eps = this.config.layerNormEps;
    const x = layerNorm(hidden, this.layerNorm1.weight.tensor, this.layerNorm1.bias.tensor, { eps }); // (B, L, C)
    const attended = this.selfAttn.forward(x, hidden); // (B, L, C)
    x.release();
    const y = layerNorm(attended, this.layerNorm2.weight.tensor, this.layerNorm2.bias.tensor, { eps }); // (B, L, C)
    const out = this.mlp.forward(y, attended); // (B, L, C)
    y.release();
    attended.release();
    return out;
  }
}

export class CLIPEncoder {
  readonly layers: CLIPEncoderLayer[];

  constructor(config: CLIPTextConfig, w: WeightScope) {
    this.layers = Array.from({ length: config.numHiddenLayers }, (_, i) => new CLIPEncoderLayer(config, w.at('layers', i)));
  }

  /**
   * Runs every layer on `embeddings` (which it leaves to the caller). Returns the last layer's
   * output and the hidden states asked for by index (0 = embeddings, i = layer i's output);
   * every other intermediate is released as soon as the next layer has consumed it.
   */
  forward(embeddings: Tensor, keep: (index: number) => boolean): { last: Tensor; kept: Map<number, Tensor> } {
    const kept = new Map<number, Tensor>();
    if (keep(0)) kept.set(0, embeddings);
    let hidden = embeddings;
    this.layers.forEach((layer, i) => {
      const next = layer.forward(hidden); // (B, L, C)
      if (hidden !== embeddings && !kept.has(i)) hidden.release();
      hidden = next;
      if (keep(i + 1)) kept.set(i + 1, hidden);
    });
    return { last: hidden, kept };
  }
}

export class CLIPTextTransformer {
  private readonly embeddings: CLIPTextEmbeddings;
  private readonly encoder: CLIPEncoder;
  private readonly finalLayerNorm: Affine;

  constructor(readonly config: CLIPTextConfig, w: WeightScope) {
    this.embeddings = new CLIPTextEmbeddings(config, w.at('embeddings'));
    this.encoder = new CLIPEncoder(config, w.at('encoder'));
    this.finalLayerNorm = layerNormWeights(w, 'final_layer_norm', config.hiddenSize);
  }

  /** `inputIds` (B·L, row-major B × L) → hidden states, final-norm output and pooled output. */
  forward(inputIds: Int32Array, options: CLIPTextOptions = {}): CLIPTextOutput {
    const { hiddenSize: c, numHiddenLayers: n, maxPositionEmbeddings, vocabSize } = this.config;
    const length = options.sequenceLength ?? maxPositionEmbeddings;
    if (!Number.isInteger(length) || length < 1 || length > maxPositionEmbeddings) {
      throw new Error(`CLIPTextTransformer: sequence length ${length} outside 1..${maxPositionEmbeddings} (max_position_embeddings)`);
    }
    if (inputIds.length === 0 || inputIds.length % length !== 0) {
      throw new Error(`CLIPTextTransformer: ${inputIds.length} input ids are not whole rows of ${length}`);
    }
    const bad = inputIds.findIndex((id) => id < 0 || id >= vocabSize);
    if (bad >= 0) throw new Error(`CLIPTextTransformer: input id ${inputIds[bad]} at ${bad} outside the vocabulary 0..${vocabSize - 1}`);
    const batch = inputIds.length / length;
    const all = options.outputHiddenStates === true;

    // 1. token + position embeddings = hidden_states[0]
    const embeddings = this.embeddings.forward(inputIds, length); // (B, L, C)
    // 2. the encoder stack; hidden_states[n - 1] is the penultimate
    const { last, kept } = this.encoder.forward(embeddings, (i) => all || i === n - 1);
    if (!kept.has(0)) embeddings.release();
    // 3. final layer norm
    const eps = this.config.layerNormEps;
    const lastHiddenState = layerNorm(last, this.finalLayerNorm.weight.tensor, this.finalLayerNorm.bias.tensor, { eps }); // (B, L, C)
    if (!kept.has(n)) last.release();
    // 4. pooled: each row's EOS position, gathered as rows of (B·L, C)
    const rows = Int32Array.from(eosPositions(inputIds, length, this.config.eosTokenId), (p, b) => b * length + p);
    const pooled = embedding(lastHiddenState.reshape([batch * length, c]), rows); // (B, C)

    return {
      hiddenStates: all ? Array.from({ length: n + 1 }, (_, i) => kept.get(i)!) : null,
      penultimate: kept.get(n - 1)!,
      lastHiddenState,
      pooled,
    };
  }
}

/** A model and the registry its weights load through. */
export interface Built<M> {
  readonly model: M;
  readonly registry: WeightRegistry;
}

export class CLIPTextModel {
  readonly textModel: CLIPTextTransformer;

  constructor(readonly config: CLIPTextConfig, w: WeightScope) {
    this.textModel = new CLIPTextTransformer(config, w.at('text_model'));
  }

  /** Declares the model's weights in a fresh registry; then `await registry.load(gpu, source, dtype)`. */
  static create(config: CLIPTextConfig, component = 'text_encoder'): Built<CLIPTextModel> {
    const registry = new WeightRegistry(component);
    return { model: new CLIPTextModel(config, new WeightScope(registry)), registry };
  }

  forward(inputIds: Int32Array, options: CLIPTextOptions = {}): CLIPTextOutput {
    return this.textModel.forward(inputIds, options);
  }
}

export class CLIPTextModelWithProjection {
  readonly textModel: CLIPTextTransformer;
  private readonly textProjection: Weight;

  constructor(readonly config: CLIPTextConfig, w: WeightScope) {
    this.textModel = new CLIPTextTransformer(config, w.at('text_model'));
    this.textProjection = w.get('text_projection.weight', [config.projectionDim, config.hiddenSize]);
  }

  /** Declares the model's weights in a fresh registry; then `await registry.load(gpu, source, dtype)`. */
  static create(config: CLIPTextConfig, component = 'text_encoder_2'): Built<CLIPTextModelWithProjection> {
    const registry = new WeightRegistry(component);
    return { model: new CLIPTextModelWithProjection(config, new WeightScope(registry)), registry };
  }

  forward(inputIds: Int32Array, options: CLIPTextOptions = {}): CLIPTextWithProjectionOutput {
    const out = this.textModel.forward(inputIds, options);
    const textEmbeds = linear(out.pooled, this.textProjection.tensor, null); // (B, P)
    return { ...out, textEmbeds };
  }
}

