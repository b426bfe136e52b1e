// diffusers' UNet2DConditionModel for the SDXL family (SDXL base, SDXL-Turbo): typed config,
// weights by checkpoint name, and a straight-line forward that returns the noise prediction.

import { add } from '../ops/binary.js';
import { concat } from '../ops/concat.js';
import { silu } from '../ops/elementwise.js';
import { chain, type DType, formatShape, Tensor, tidy } from '../tensor.js';
import { ConfigReader } from './config.js';
import { CONFIG_BOUNDS } from './config-bounds.js';
import { UsageError } from '../errors.js';
import { TimestepEmbedding, Timesteps } from './blocks/embeddings.js';
import { Conv2d, GroupNorm } from './blocks/layers.js';
import { CrossAttentionContext } from './blocks/transformer.js';
import { CrossAttnDownBlock2D, CrossAttnUpBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D } from './blocks/unet-blocks.js';
import { WeightRegistry, WeightScope } from './weights.js';

export type DownBlockType = 'DownBlock2D' | 'CrossAttnDownBlock2D';
export type UpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

/** The UNet config with every per-level setting as a list over levels (down order). */
export interface UNetConfig {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly blockOutChannels: readonly number[];
  readonly downBlockTypes: readonly DownBlockType[];
  readonly upBlockTypes: readonly UpBlockType[];
  /** Resnets per down level; up levels have one more. */
  readonly layersPerBlock: readonly number[];
  /** BasicTransformerBlocks per Transformer2DModel; the mid block uses the last level's. */
  readonly transformerLayersPerBlock: readonly number[];
  /** Attention heads per level: the config's `attention_head_dim` (a diffusers misnomer);
   *  the head width is channels / heads (64 for SDXL). */
  readonly heads: readonly number[];
  /** Width of the prompt embeds every cross-attention reads. */
  readonly crossAttentionDim: number;
  readonly normNumGroups: number;
  readonly normEps: number;
  readonly flipSinToCos: boolean;
  readonly freqShift: number;
  /** Width of each size/crop value's sinusoidal embedding (add_time_proj). */
  readonly additionTimeEmbedDim: number;
  /** add_embedding's input: pooled text embeds + 6 · additionTimeEmbedDim. */
  readonly projectionClassEmbeddingsInputDim: number;
  /** blockOutChannels[0] · 4. */
  readonly timeEmbedDim: number;
  /** Width of the pooled text embeds the UNet expects (text_embeds). */
  readonly textEmbedsDim: number;
}

/** The six add_time_ids: original (h, w), crop (top, left), target (h, w). */
export const TIME_IDS = 6;

/**
 * Parses unet/config.json. Everything outside the SDXL family (other block types, conv
 * projections in the transformers, class embeddings, other time embeddings, …) is an error
 * naming the key; keys left out mean diffusers' defaults.
 */
export function parseUNetConfig(json: unknown, where = 'unet/config.json'): UNetConfig {
  const c = new ConfigReader(json, where, CONFIG_BOUNDS.unet);
  c.oneOf('_class_name', ['UNet2DConditionModel'], 'UNet2DConditionModel');
  const blockOutChannels = c.intList('block_out_channels');
  const levels = blockOutChannels.length;
  const downBlockTypes = c.oneOfEach('down_block_types', ['DownBlock2D', 'CrossAttnDownBlock2D']);
  const upBlockTypes = c.oneOfEach('up_block_types', ['CrossAttnUpBlock2D', 'UpBlock2D']);
  if (downBlockTypes.length !== levels || upBlockTypes.length !== levels) {
    throw new UsageError(`${where}: ${levels} block_out_channels but ${downBlockTypes.length} down_block_types and ${upBlockTypes.length} up_block_types`);
  }
  c.oneOf('mid_block_type', ['UNetMidBlock2DCrossAttn'], 'UNetMidBlock2DCrossAttn');
  // Settings SDXL fixes; the alternatives are other architectures.
  c.literal('use_linear_projection', [true], false);
  c.literal('addition_embed_type', ['text_time'], null);
  c.literal('time_embedding_type', ['positional'], 'positional');
  c.literal('resnet_time_scale_shift', ['default'], 'default');
  c.literal('act_fn', ['silu'], 'silu');
  c.literal('attention_type', ['default'], 'default');
  c.literal('class_embed_type', [null], null);
  c.literal('num_class_embeds', [null], null);
  c.literal('class_embeddings_concat', [false], false);
  c.literal('num_attention_heads', [null], null); // diffusers itself rejects it for this class
  c.literal('encoder_hid_dim', [null], null);
  c.literal('encoder_hid_dim_type', [null], null);
  c.literal('time_embedding_dim', [null], null);
  c.literal('time_embedding_act_fn', [null], null);
  c.literal('timestep_post_act', [null], null);
  c.literal('time_cond_proj_dim', [null], null);
  c.literal('center_input_sample', [false], false);
  c.literal('conv_in_kernel', [3], 3);
  c.literal('conv_out_kernel', [3], 3);
  c.literal('downsample_padding', [1], 1);
  c.literal('mid_block_scale_factor', [1], 1);
  c.literal('resnet_out_scale_factor', [1], 1);
  c.literal('resnet_skip_time_act', [false], false);
  c.literal('only_cross_attention', [false], false);
  c.literal('mid_block_only_cross_attention', [null, false], null);
  c.literal('dual_cross_attention', [false], false);
  c.literal('cross_attention_norm', [null], null);
  c.literal('reverse_transformer_layers_per_block', [null], null);
  // Attention upcasting only changes torch's fp16 softmax; ours accumulates in f32 anyway.
  c.literal('upcast_attention', [null, false, true], false);

  const additionTimeEmbedDim = c.int('addition_time_embed_dim');
  const projectionClassEmbeddingsInputDim = c.int('projection_class_embeddings_input_dim');
  const textEmbedsDim = projectionClassEmbeddingsInputDim - TIME_IDS * additionTimeEmbedDim;
  if (textEmbedsDim < 1) {
    throw new UsageError(`${where}: projection_class_embeddings_input_dim ${projectionClassEmbeddingsInputDim} leaves no room for text embeds beside ${TIME_IDS} × addition_time_embed_dim ${additionTimeEmbedDim}`);
  }
  const config: UNetConfig = {
    inChannels: c.int('in_channels', 4),
    outChannels: c.int('out_channels', 4),
    blockOutChannels,
    downBlockTypes,
    upBlockTypes,
    layersPerBlock: c.intList('layers_per_block', levels, 2),
    transformerLayersPerBlock: c.intList('transformer_layers_per_block', levels, 1),
    heads: c.intList('attention_head_dim', levels, 8),
    crossAttentionDim: c.int('cross_attention_dim', 1280),
    normNumGroups: c.int('norm_num_groups', 32),
    normEps: c.number('norm_eps', 1e-5),
    flipSinToCos: c.bool('flip_sin_to_cos', true),
    freqShift: c.int('freq_shift', 0),
    additionTimeEmbedDim,
    projectionClassEmbeddingsInputDim,
    timeEmbedDim: blockOutChannels[0]! * 4,
    textEmbedsDim,
  };
  for (let i = 0; i < levels; i++) {
    const [channels, heads] = [blockOutChannels[i]!, config.heads[i]!];
    if (channels % heads !== 0) throw new UsageError(`${where}: block_out_channels[${i}] = ${channels} does not split into attention_head_dim[${i}] = ${heads} heads`);
    if (channels % config.normNumGroups !== 0) throw new UsageError(`${where}: block_out_channels[${i}] = ${channels} does not split into norm_num_groups = ${config.normNumGroups}`);
  }
  return config;
}

export interface UNetInputs {
  /** Noisy latents, already scaled by the scheduler: (B, in_channels, h, w). */
  readonly sample: Tensor;
  /** The timestep as a float (999.0 for one-step SDXL-Turbo), shared by the batch; or a (B)
   *  f32 tensor of it per row, which a replayed forward (gpu/replay.ts) reads anew each step. */
  readonly timestep: number | Tensor;
  /** prompt_embeds: (B, S, cross_attention_dim). */
  readonly encoderHiddenStates: Tensor;
  /** pooled_prompt_embeds: (B, textEmbedsDim). */
  readonly textEmbeds: Tensor;
  /** add_time_ids, B rows of six, flattened: [orig_h, orig_w, crop_top, crop_left, target_h, target_w] (height first). */
  readonly timeIds: ArrayLike<number>;
  /** prepareContext(encoderHiddenStates), made once for all steps on the same prompts; without
   *  it the forward prepares (and releases) its own. */
  readonly context?: CrossAttentionContext;
}

/**
 * Observes intermediates by the names of the reference fixture's hooks (time_proj,
 * time_embedding, add_time_proj, add_embedding, conv_in, down_blocks.{i}, mid_block,
 * up_blocks.{i}, conv_norm_out, conv_out). The tensor is valid only during the call and must
 * not be released; `t.read()` may be started there (the copy is recorded in order).
 */
export type UNetHooks = (name: string, tensor: Tensor) => void;

type DownBlock = DownBlock2D | CrossAttnDownBlock2D;
type UpBlock = UpBlock2D | CrossAttnUpBlock2D;

export class UNet2DConditionModel {
  /** Where the weights are declared; `await registry.load(gpu, source, dtype)` before forward. */
  readonly registry: WeightRegistry;
  private readonly timeProj: Timesteps;
  private readonly timeEmbedding: TimestepEmbedding;
  private readonly addTimeProj: Timesteps;
  private readonly addEmbedding: TimestepEmbedding;
  private readonly convIn: Conv2d;
  private readonly downBlocks: DownBlock[];
  private readonly midBlock: UNetMidBlock2DCrossAttn;
  private readonly upBlocks: UpBlock[];
  private readonly convNormOut: GroupNorm;
  private readonly convOut: Conv2d;

  constructor(readonly config: UNetConfig, w: WeightScope) {
    this.registry = w.registry;
    const { blockOutChannels: channels, timeEmbedDim, normNumGroups: groups, normEps: eps } = config;
    const levels = channels.length;
    const resnet = { tembChannels: timeEmbedDim, groups, eps };
    const attention = (i: number) => ({
      heads: config.heads[i]!,
      transformerLayers: config.transformerLayersPerBlock[i]!,
      crossAttentionDim: config.crossAttentionDim,
    });

    this.timeProj = new Timesteps(channels[0]!, config.flipSinToCos, config.freqShift);
    this.timeEmbedding = new TimestepEmbedding(w.at('time_embedding'), channels[0]!, timeEmbedDim);
    this.addTimeProj = new Timesteps(config.additionTimeEmbedDim, config.flipSinToCos, config.freqShift);
    this.addEmbedding = new TimestepEmbedding(w.at('add_embedding'), config.projectionClassEmbeddingsInputDim, timeEmbedDim);
    this.convIn = new Conv2d(w.at('conv_in'), config.inChannels, channels[0]!, 3, { padding: 1 });

    this.downBlocks = config.downBlockTypes.map((type, i) => {
      const options = {
        ...resnet,
        inChannels: channels[Math.max(i - 1, 0)]!,
        outChannels: channels[i]!,
        layers: config.layersPerBlock[i]!,
        addDownsample: i < levels - 1,
      };
      const scope = w.at('down_blocks', i);
      return type === 'CrossAttnDownBlock2D' ? new CrossAttnDownBlock2D(scope, { ...options, ...attention(i) }) : new DownBlock2D(scope, options);
    });

    this.midBlock = new UNetMidBlock2DCrossAttn(w.at('mid_block'), { ...resnet, ...attention(levels - 1), channels: channels[levels - 1]! });

    // Up level i mirrors down level levels-1-i.
    this.upBlocks = config.upBlockTypes.map((type, i) => {
      const level = levels - 1 - i;
      const options = {
        ...resnet,
        inChannels: channels[Math.max(level - 1, 0)]!,
        prevOutputChannels: channels[Math.min(level + 1, levels - 1)]!,
        outChannels: channels[level]!,
        layers: config.layersPerBlock[level]! + 1,
        addUpsample: i < levels - 1,
      };
      const scope = w.at('up_blocks', i);
      return type === 'CrossAttnUpBlock2D' ? new CrossAttnUpBlock2D(scope, { ...options, ...attention(level) }) : new UpBlock2D(scope, options);
    });

    this.convNormOut = new GroupNorm(w.at('conv_norm_out'), groups, channels[0]!, eps);
    this.convOut = new Conv2d(w.at('conv_out'), channels[0]!, config.outChannels, 3, { padding: 1 });
  }

  /** The model with its weights declared in a fresh registry named `component`. */
  static create(config: UNetConfig, component = 'unet'): UNet2DConditionModel {
    return new UNet2DConditionModel(config, new WeightScope(new WeightRegistry(component)));
  }

  /**
   * Every cross-attention's k|v of `encoderHiddenStates` (B, S, cross_attention_dim): the part
   * of a forward that depends on the prompts alone, made once and handed to every step's
   * forward (UNetInputs.context). The caller releases it (release()) when done.
   */
  prepareContext(encoderHiddenStates: Tensor): CrossAttentionContext {
    const dtype = this.convIn.bias.tensor.dtype; // the weight may be 8-bit
    const shape = encoderHiddenStates.shape;
    if (shape.length !== 3 || shape[2] !== this.config.crossAttentionDim || encoderHiddenStates.dtype !== dtype) {
      throw new Error(`UNet2DConditionModel.prepareContext: encoderHiddenStates is ${formatShape(shape)} ${encoderHiddenStates.dtype}, expected (B, S, ${this.config.crossAttentionDim}) ${dtype}`);
    }
    const context = new CrossAttentionContext(encoderHiddenStates);
    try {
      for (const block of [...this.downBlocks, this.midBlock, ...this.upBlocks]) if (!(block instanceof DownBlock2D || block instanceof UpBlock2D)) block.prepare(context);
    } catch (e) {
      context.release();
      throw e;
    }
    return context;
  }

  /** The noise prediction (B, out_channels, h, w) in the weights' dtype, the caller's (its
   *  scope's, or to release by hand outside any scope); the inputs are left as they are. */
  forward(inputs: UNetInputs, hooks?: UNetHooks): Tensor {
    const { batch } = this.check(inputs);
    if (inputs.context) return this.run(inputs, inputs.context, batch, hooks);
    const context = this.prepareContext(inputs.encoderHiddenStates);
    try {
      return this.run(inputs, context, batch, hooks);
    } finally {
      context.release();
    }
  }

  private run(inputs: UNetInputs, context: CrossAttentionContext, batch: number, hooks?: UNetHooks): Tensor {
    const hook = hooks ?? (() => {});
    const observe = (name: string, t: Tensor): Tensor => (hook(name, t), t);
    const { sample } = inputs;
    const dtype = sample.dtype;

    return chain(
      sample,
      (sample) => {
        // 1.–2. time embedding + size/crop conditioning
        // what every resnet's time_emb_proj reads: SiLU(emb), made once
        const emb = silu(this.embedding(inputs, batch, dtype, observe)); // (B, T)

        // 3. conv_in; its output is the first skip
        const skips: Tensor[] = [observe('conv_in', this.convIn.forward(sample))]; // (B, C0, h, w)

        // 4. down levels (level i at s = 2^i: (B, C_i, h_i, w_i), h_i = ⌈h/s⌉, the last without a
        //    downsampler): every output state goes on the skip stack, the last is also the next
        //    level's input
        this.downBlocks.forEach((block, i) => {
          const x = skips[skips.length - 1]!;
          const states = block instanceof CrossAttnDownBlock2D ? block.forward(x, emb, context) : block.forward(x, emb); // [(B, C_i, …)]
          skips.push(...states);
          hook(`down_blocks.${i}`, states[states.length - 1]!); // (B, C_i, h_(i+1), w_(i+1)), or (B, C_i, h_i, w_i) at the last level
        });

        return chain(
          skips[skips.length - 1]!,
          // 5. mid block
          (h) => observe('mid_block', this.midBlock.forward(h, emb, context)), // (B, C_last, h_last, w_last)
          // 6. up levels (up i mirrors down level L-1-i), each taking one skip per resnet and
          //    upsampling (all but the last) to the size of the skip left on top, as diffusers'
          //    upsample_size: 2× the level's size, or one less where the way down rounded an odd side up
          ...this.upBlocks.map((block, i) => (h: Tensor) => {
            const resnets = this.config.layersPerBlock[this.upBlocks.length - 1 - i]! + 1;
            const levelSkips = skips.splice(skips.length - resnets);
            const below = skips[skips.length - 1]; // the next level's first skip; none after the last level
            const size = below && ([below.shape[2]!, below.shape[3]!] as const);
            const out = block instanceof CrossAttnUpBlock2D ? block.forward(h, levelSkips, emb, context, size) : block.forward(h, levelSkips, emb, size);
            return observe(`up_blocks.${i}`, out); // (B, C_(L-1-i), h_(L-2-i), w_(L-2-i)) but the last
          }),
        );
      },
      // 7. GroupNorm → SiLU → conv_out (not fused: the fixture records the norm's output)
      (h) => observe('conv_norm_out', this.convNormOut.forward(h)), // (B, C0, h, w)
      (h) => silu(h), // (B, C0, h, w)
      (h) => observe('conv_out', this.convOut.forward(h)), // (B, out, h, w)
    );
  }

  /** diffusers' get_time_embed + get_aug_embed, summed: (B, T). */
  private embedding(inputs: UNetInputs, batch: number, dtype: DType, observe: (name: string, t: Tensor) => Tensor): Tensor {
    const { additionTimeEmbedDim } = this.config;
    // `proj`'s sinusoids of float values, uploaded for it; observed as `name`.
    const sinusoids = (name: string, proj: Timesteps, values: ArrayLike<number>, label: string): Tensor =>
      observe(name, tidy(() => proj.forward(Tensor.upload(inputs.sample.gpu, Float32Array.from(values), 'f32', [values.length], 'f32', { label }), dtype)));
    return tidy(() => {
      // 1. time embedding: sinusoids of the float timestep (B, C0) → Linear-SiLU-Linear
      const { timestep } = inputs;
      const tProj = (): Tensor =>
        typeof timestep === 'number'
          ? sinusoids('time_proj', this.timeProj, Array<number>(batch).fill(timestep), 'unet.timesteps')
          : observe('time_proj', this.timeProj.forward(timestep, dtype));
      const tEmb = observe('time_embedding', tidy(() => this.timeEmbedding.forward(tProj()))); // (B, T)
      // 2. size/crop conditioning: each time id embedded alone (6B, A), after the pooled text embeds
      const addEmb = chain(
        inputs.textEmbeds,
        (t) => concat([t, sinusoids('add_time_proj', this.addTimeProj, inputs.timeIds, 'unet.time_ids').reshape([batch, TIME_IDS * additionTimeEmbedDim])], 1), // (B, P)
        (h) => observe('add_embedding', this.addEmbedding.forward(h)), // (B, T)
      );
      return add(tEmb, addEmb); // (B, T)
    });
  }

  /** Shapes and dtypes of the inputs, in one error naming each problem. */
  private check(inputs: UNetInputs): { batch: number } {
    const { sample, encoderHiddenStates, textEmbeds, timeIds, timestep, context } = inputs;
    const c = this.config;
    const dtype = this.convIn.bias.tensor.dtype; // the weight may be 8-bit; biases take the compute dtype
    const [batch = 0, channels, height = 0, width = 0] = sample.shape;
    const problems: string[] = [];
    if (sample.shape.length !== 4 || channels !== c.inChannels) problems.push(`sample is ${formatShape(sample.shape)}, expected (B, ${c.inChannels}, h, w)`);
    // Any size: odd sides round up on the way down and the upsamplers meet the skips' sizes.
    if (height === 0 || width === 0) problems.push(`sample is ${height}×${width}; the latent height and width must be positive`);
    const ehs = encoderHiddenStates.shape;
    if (ehs.length !== 3 || ehs[0] !== batch || ehs[2] !== c.crossAttentionDim) {
      problems.push(`encoderHiddenStates is ${formatShape(ehs)}, expected (${batch}, S, ${c.crossAttentionDim})`);
    }
    if (textEmbeds.shape.join() !== [batch, c.textEmbedsDim].join()) problems.push(`textEmbeds is ${formatShape(textEmbeds.shape)}, expected (${batch}, ${c.textEmbedsDim})`);
    if (timeIds.length !== batch * TIME_IDS) problems.push(`timeIds has ${timeIds.length} values, expected ${TIME_IDS} per batch row (${batch * TIME_IDS})`);
    if (typeof timestep === 'number' && !Number.isFinite(timestep)) problems.push(`timestep ${timestep} is not a finite number`);
    if (timestep instanceof Tensor && (timestep.dtype !== 'f32' || timestep.shape.join() !== `${batch}`)) problems.push(`timestep is ${timestep.dtype} ${formatShape(timestep.shape)}, expected (${batch}) f32`);
    if (context && context.states !== encoderHiddenStates) problems.push('context was prepared from another encoderHiddenStates tensor');
    for (const [name, t] of [['sample', sample], ['encoderHiddenStates', encoderHiddenStates], ['textEmbeds', textEmbeds]] as const) {
      if (t.dtype !== dtype) problems.push(`${name} is ${t.dtype} but the weights are ${dtype}`);
    }
    if (problems.length > 0) throw new Error(`UNet2DConditionModel.forward: ${problems.join('; ')}`);
    return { batch };
  }
}
