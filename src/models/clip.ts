// The SDXL text encoders: transformers' CLIPTextModel (CLIP ViT-L/14, `text_encoder`) and
// CLIPTextModelWithProjection (OpenCLIP bigG/14, `text_encoder_2`), module for module, as
// the SDXL pipeline calls them: causal mask, no attention mask, every hidden state
// available. SDXL uses `penultimate` (hidden_states[-2], no final_layer_norm) of both and
// the projection model's `textEmbeds`.

import { attention, columns } from '../ops/attention.js';
import { add } from '../ops/binary.js';
import { gelu, quickGelu } from '../ops/elementwise.js';
import { embedding } from '../ops/embedding.js';
import { chain, type Tensor, tidy } from '../tensor.js';
import { FusedLinear } from './blocks/fused.js';
import { Embedding, LayerNorm, Linear } from './blocks/layers.js';
import { ConfigReader } from './config.js';
import { CONFIG_BOUNDS } from './config-bounds.js';
import { UsageError } from '../errors.js';
import { WeightRegistry, WeightScope } from './weights.js';

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
  const c = new ConfigReader(json, where, CONFIG_BOUNDS.text_encoder);
  c.oneOf('model_type', ['clip_text_model'], 'clip_text_model');
  const config: CLIPTextConfig = {
    hiddenSize: c.int('hidden_size'),
    intermediateSize: c.int('intermediate_size'),
    numHiddenLayers: c.int('num_hidden_layers'),
    numAttentionHeads: c.int('num_attention_heads'),
    hiddenAct: c.oneOf('hidden_act', ['quick_gelu', 'gelu'], 'quick_gelu'),
    layerNormEps: c.number('layer_norm_eps', 1e-5),
    maxPositionEmbeddings: c.int('max_position_embeddings', 77),
    vocabSize: c.int('vocab_size', 49408),
    projectionDim: c.int('projection_dim', 512),
    eosTokenId: c.int('eos_token_id', 2),
  };
  if (config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new UsageError(`${where}: hidden_size ${config.hiddenSize} is not a multiple of num_attention_heads ${config.numAttentionHeads}`);
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

/** Every tensor is the caller's (its scope's, or to release by hand outside any scope);
 *  `penultimate` is also an entry of `hiddenStates` when those are kept (releasing a tensor
 *  twice is harmless). */
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

export class CLIPTextEmbeddings {
  private readonly tokenEmbedding: Embedding;
  private readonly positionEmbedding: Embedding;

  constructor(private readonly config: CLIPTextConfig, w: WeightScope) {
    this.tokenEmbedding = new Embedding(w.at('token_embedding'), config.vocabSize, config.hiddenSize);
    this.positionEmbedding = new Embedding(w.at('position_embedding'), config.maxPositionEmbeddings, config.hiddenSize);
    // Checkpoints written by older transformers carry the position_ids buffer (0..76).
    w.registry.tolerated.add(`${w.prefix}.position_ids`);
  }

  /** `ids` (B·L) → token + position embeddings (B, L, C). */
  forward(ids: Int32Array, sequenceLength: number): Tensor {
    const batch = ids.length / sequenceLength;
    const positions = Int32Array.from({ length: sequenceLength }, (_, i) => i);
    // (B·L, C) as (B, L, C), plus (L, C)
    return tidy(() => add(this.tokenEmbedding.forward(ids).reshape([batch, sequenceLength, this.config.hiddenSize]), this.positionEmbedding.forward(positions)));
  }
}

export class CLIPAttention {
  /** q_proj|k_proj|v_proj as one matmul with layer_norm1 folded in, read in place by the attention. */
  private readonly qkvProj: FusedLinear;
  private readonly outProj: Linear;

  /** `norm`: the encoder layer's layer_norm1, applied to x first. */
  constructor(private readonly config: CLIPTextConfig, w: WeightScope, norm: LayerNorm) {
    const c = config.hiddenSize;
    const kProj = new Linear(w.at('k_proj'), c, c);
    const vProj = new Linear(w.at('v_proj'), c, c);
    const qProj = new Linear(w.at('q_proj'), c, c);
    this.outProj = new Linear(w.at('out_proj'), c, c);
    this.qkvProj = new FusedLinear(w.registry, `${w.prefix}.norm_qkv_proj`, [qProj, kProj, vProj], norm);
  }

  /** Causal self-attention of norm(x) (B, L, C), plus `residual` (B, L, C). */
  forward(x: Tensor, residual: Tensor): Tensor {
    const heads = this.config.numAttentionHeads;
    const c = this.config.hiddenSize;
    return chain(
      x,
      (x) => {
        const qkv = this.qkvProj.forward(x); // (B, L, 3C)
        return attention(columns(qkv, 0, c), columns(qkv, c, c), columns(qkv, 2 * c, c), { heads, causal: true }); // (B, L, C)
      },
      (h) => this.outProj.forward(h, residual), // (B, L, C)
    );
  }
}

export class CLIPMLP {
  /** fc1 with layer_norm2 folded in. */
  private readonly fc1: FusedLinear;
  private readonly fc2: Linear;

  /** `norm`: the encoder layer's layer_norm2, applied to x first. */
  constructor(private readonly config: CLIPTextConfig, w: WeightScope, norm: LayerNorm) {
    const fc1 = new Linear(w.at('fc1'), config.hiddenSize, config.intermediateSize);
    this.fc2 = new Linear(w.at('fc2'), config.intermediateSize, config.hiddenSize);
    this.fc1 = new FusedLinear(w.registry, `${w.prefix}.norm_fc1`, [fc1], norm);
  }

  /** fc2(act(fc1(norm(x)))) + residual, all (B, L, C). */
  forward(x: Tensor, residual: Tensor): Tensor {
    const act = (h: Tensor): Tensor => (this.config.hiddenAct === 'quick_gelu' ? quickGelu(h) : gelu(h, 'none'));
    return chain(
      x,
      (x) => act(this.fc1.forward(x)), // (B, L, I)
      (h) => this.fc2.forward(h, residual), // (B, L, C)
    );
  }
}

export class CLIPEncoderLayer {
  // layer_norm1 and layer_norm2 are folded into the projections that read their outputs.
  private readonly selfAttn: CLIPAttention;
  private readonly mlp: CLIPMLP;

  constructor(config: CLIPTextConfig, w: WeightScope) {
    this.selfAttn = new CLIPAttention(config, w.at('self_attn'), new LayerNorm(w.at('layer_norm1'), config.hiddenSize, config.layerNormEps));
    this.mlp = new CLIPMLP(config, w.at('mlp'), new LayerNorm(w.at('layer_norm2'), config.hiddenSize, config.layerNormEps));
  }

  /** Pre-norm block: h + attn(ln1(h)), then + mlp(ln2(·)), all (B, L, C). */
  forward(hidden: Tensor): Tensor {
    return chain(
      hidden,
      (h) => this.selfAttn.forward(h, h), // (B, L, C)
      (h) => this.mlp.forward(h, h), // (B, L, C)
    );
  }
}

/** The encoder's output: the last layer's, and the hidden states asked for by index. */
export interface CLIPEncoderStates {
  readonly last: Tensor;
  readonly kept: ReadonlyMap<number, Tensor>;
}

export class CLIPEncoder {
  readonly layers: CLIPEncoderLayer[];

  constructor(config: CLIPTextConfig, w: WeightScope) {
    this.layers = Array.from({ length: config.numHiddenLayers }, (_, i) => new CLIPEncoderLayer(config, w.at('layers', i)));
  }

  /**
   * Runs every layer on `embeddings` (left as it is). Returns the last layer's output and the
   * hidden states `wanted` by index (0 = embeddings, i = layer i's output); every other
   * intermediate is released once the next layer has run.
   */
  forward(embeddings: Tensor, wanted: (index: number) => boolean): CLIPEncoderStates {
    return chain<CLIPEncoderStates>(
      { last: embeddings, kept: new Map(wanted(0) ? [[0, embeddings]] : []) },
      ...this.layers.map((layer, i) => ({ last, kept }: CLIPEncoderStates) => {
        const next = layer.forward(last); // (B, L, C)
        return { last: next, kept: wanted(i + 1) ? new Map(kept).set(i + 1, next) : kept };
      }),
    );
  }
}

export class CLIPTextTransformer {
  private readonly embeddings: CLIPTextEmbeddings;
  private readonly encoder: CLIPEncoder;
  private readonly finalLayerNorm: LayerNorm;

  constructor(readonly config: CLIPTextConfig, w: WeightScope) {
    this.embeddings = new CLIPTextEmbeddings(config, w.at('embeddings'));
    this.encoder = new CLIPEncoder(config, w.at('encoder'));
    this.finalLayerNorm = new LayerNorm(w.at('final_layer_norm'), config.hiddenSize, config.layerNormEps);
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

    const { lastHiddenState, kept } = tidy(() => {
      // 1. token + position embeddings = hidden_states[0]; 2. the encoder stack, where
      //    hidden_states[n - 1] is the penultimate
      const { last, kept } = tidy(() => this.encoder.forward(this.embeddings.forward(inputIds, length), (i) => all || i === n - 1)); // (B, L, C)
      // 3. final layer norm
      return { lastHiddenState: this.finalLayerNorm.forward(last), kept }; // (B, L, C)
    });
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

export class CLIPTextModel {
  /** Where the weights are declared; `await registry.load(gpu, source, dtype)` before forward. */
  readonly registry: WeightRegistry;
  readonly textModel: CLIPTextTransformer;

  constructor(readonly config: CLIPTextConfig, w: WeightScope) {
    this.registry = w.registry;
    this.textModel = new CLIPTextTransformer(config, w.at('text_model'));
  }

  /** The model with its weights declared in a fresh registry named `component`. */
  static create(config: CLIPTextConfig, component = 'text_encoder'): CLIPTextModel {
    return new CLIPTextModel(config, new WeightScope(new WeightRegistry(component)));
  }

  forward(inputIds: Int32Array, options: CLIPTextOptions = {}): CLIPTextOutput {
    return this.textModel.forward(inputIds, options);
  }
}

export class CLIPTextModelWithProjection {
  /** Where the weights are declared; `await registry.load(gpu, source, dtype)` before forward. */
  readonly registry: WeightRegistry;
  readonly textModel: CLIPTextTransformer;
  private readonly textProjection: Linear;

  constructor(readonly config: CLIPTextConfig, w: WeightScope) {
    this.registry = w.registry;
    this.textModel = new CLIPTextTransformer(config, w.at('text_model'));
    this.textProjection = new Linear(w.at('text_projection'), config.hiddenSize, config.projectionDim, false);
  }

  /** The model with its weights declared in a fresh registry named `component`. */
  static create(config: CLIPTextConfig, component = 'text_encoder_2'): CLIPTextModelWithProjection {
    return new CLIPTextModelWithProjection(config, new WeightScope(new WeightRegistry(component)));
  }

  forward(inputIds: Int32Array, options: CLIPTextOptions = {}): CLIPTextWithProjectionOutput {
    const out = this.textModel.forward(inputIds, options);
    const textEmbeds = this.textProjection.forward(out.pooled); // (B, P)
    return { ...out, textEmbeds };
  }
}

