// torch.nn's parametrised layers (Linear, Conv2d, GroupNorm, LayerNorm, Embedding): each
// declares its weights under its own scope, as the checkpoint names them (`proj_in.weight`,
// …), and forwards to one op. The diffusers and transformers blocks are written in terms of these.

import { conv2d } from '../../ops/conv2d.js';
import { embedding } from '../../ops/embedding.js';
import { linear, type LinearOptions } from '../../ops/matmul.js';
import { groupNorm } from '../../ops/groupnorm.js';
import { layerNorm } from '../../ops/layernorm.js';
import type { Tensor } from '../../tensor.js';
import type { Weight, WeightScope } from '../weights.js';

export class Linear {
  readonly weight: Weight;
  readonly bias: Weight | null;

  constructor(w: WeightScope, inFeatures: number, outFeatures: number, bias = true) {
    this.weight = w.get('weight', [outFeatures, inFeatures], true);
    this.bias = bias ? w.get('bias', [outFeatures]) : null;
  }

  /** x (..., in) → (..., out), plus `residual` (..., out) when given; `options.bias` in place
   *  of the layer's own (a derived one with another folded in), image layouts as linear's. */
  forward(x: Tensor, residual?: Tensor, options: { readonly bias?: Tensor } & Pick<LinearOptions, 'imageIn' | 'imageOut'> = {}): Tensor {
    const { bias, ...layout } = options;
    return linear(x, this.weight.value, bias ?? this.bias?.tensor ?? null, { ...layout, residual });
  }
}

/** [top, bottom, left, right], or one number for all four sides. */
export type Padding = number | readonly [number, number, number, number];

export class Conv2d {
  readonly weight: Weight;
  readonly bias: Weight;

  constructor(
    w: WeightScope,
    inChannels: number,
    outChannels: number,
    kernel: number,
    private readonly options: { readonly stride?: number; readonly padding?: Padding } = {},
  ) {
    this.weight = w.get('weight', [outChannels, inChannels, kernel, kernel], true);
    this.bias = w.get('bias', [outChannels]);
  }

  /** x (B, in, H, W) → (B, out, Ho, Wo), plus `residual` (B, out, Ho, Wo) when given; `bias`
   *  (out) or (B, out) in place of the layer's own. */
  forward(x: Tensor, residual?: Tensor, bias?: Tensor): Tensor {
    return conv2d(x, this.weight.value, bias ?? this.bias.tensor, residual ? { ...this.options, residual } : this.options);
  }
}

export class GroupNorm {
  readonly weight: Weight;
  readonly bias: Weight;

  constructor(w: WeightScope, readonly groups: number, channels: number, readonly eps: number) {
    if (channels % groups !== 0) throw new Error(`${w.prefix}: ${channels} channels do not split into ${groups} groups`);
    this.weight = w.get('weight', [channels]);
    this.bias = w.get('bias', [channels]);
  }

  /** x (B, C, ...) → same shape; `silu` fuses the activation that follows in every resnet. */
  forward(x: Tensor, silu = false): Tensor {
    return groupNorm(x, this.weight.tensor, this.bias.tensor, { groups: this.groups, eps: this.eps, silu });
  }
}

export class LayerNorm {
  readonly weight: Weight;
  readonly bias: Weight;

  constructor(w: WeightScope, features: number, readonly eps: number) {
    this.weight = w.get('weight', [features]);
    this.bias = w.get('bias', [features]);
  }

  /** Normalises the last dim of x (..., C). */
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight.tensor, this.bias.tensor, { eps: this.eps });
  }
}

export class Embedding {
  readonly weight: Weight;

  constructor(w: WeightScope, numEmbeddings: number, embeddingDim: number) {
    this.weight = w.get('weight', [numEmbeddings, embeddingDim]);
  }

  /** ids (N) → their rows (N, embeddingDim). */
  forward(ids: Int32Array): Tensor {
    return embedding(this.weight.tensor, ids);
  }
}
