// The plausible range of every number a model folder's configs hold, in one place (the table in
// docs/config-bounds.md is this file). A config is checked against it as it is parsed, before
// any module is built or any buffer allocated, so a hand-edited or hostile file ("num_hidden_layers":
// 1e9) is a one-line error instead of gigabytes of tables and layers. Each range holds SDXL's own
// value (the comment: SDXL-Turbo's, from test/fixtures/sdxl-turbo-layout) with generous headroom
// for other members of the family and for small test models; none is a promise that such a model
// would run well, only that its config is not absurd.

export interface Bound {
  readonly min: number;
  readonly max: number;
}

const range = (min: number, max: number): Bound => ({ min, max });

/** Levels of a UNet or VAE (the length of block_out_channels). */
const LEVELS = range(1, 8);
/** Channels of any layer: SDXL's widest is 1280 (UNet), 5120 (bigG's MLP). */
const CHANNELS = range(1, 16384);
const EPS = range(1e-12, 0.1);

export const CONFIG_BOUNDS = {
  unet: {
    levels: LEVELS, // 3
    block_out_channels: CHANNELS, // 320, 640, 1280
    layers_per_block: range(1, 16), // 2
    transformer_layers_per_block: range(1, 64), // 1, 2, 10
    attention_head_dim: range(1, 256), // 5, 10, 20 (heads: a diffusers misnomer)
    cross_attention_dim: CHANNELS, // 2048
    norm_num_groups: range(1, 1024), // 32
    norm_eps: EPS, // 1e-5
    in_channels: range(1, 64), // 4
    out_channels: range(1, 64), // 4
    freq_shift: range(0, 16), // 0
    addition_time_embed_dim: range(1, 4096), // 256
    projection_class_embeddings_input_dim: range(1, 65536), // 2816
  },
  vae: {
    levels: LEVELS, // 4
    block_out_channels: CHANNELS, // 128, 256, 512, 512
    layers_per_block: range(1, 16), // 2
    norm_num_groups: range(1, 1024), // 32
    in_channels: range(1, 64), // 3
    out_channels: range(1, 64), // 3
    latent_channels: range(1, 64), // 4
    scaling_factor: range(1e-6, 1e3), // 0.13025
  },
  /** Both text encoders (CLIP ViT-L and OpenCLIP bigG). */
  text_encoder: {
    hidden_size: CHANNELS, // 768, 1280
    intermediate_size: range(1, 65536), // 3072, 5120
    num_hidden_layers: range(1, 128), // 12, 32
    num_attention_heads: range(1, 256), // 12, 20
    layer_norm_eps: EPS, // 1e-5
    max_position_embeddings: range(2, 1024), // 77
    vocab_size: range(1, 1 << 20), // 49408
    projection_dim: CHANNELS, // 768, 1280
    eos_token_id: range(0, 1 << 20), // 2
  },
  scheduler: {
    num_train_timesteps: range(2, 100_000), // 1000
    beta_start: range(1e-9, 0.5), // 0.00085
    beta_end: range(1e-9, 0.999), // 0.012
    steps_offset: range(0, 1000), // 1
  },
  tokenizer: {
    model_max_length: range(2, 1024), // 77; at most the text encoder's max_position_embeddings
  },
} as const satisfies Record<string, Record<string, Bound>>;

export type Bounds = Readonly<Record<string, Bound>>;

