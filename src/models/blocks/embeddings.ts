// diffusers' Timesteps (sinusoidal features of float timesteps, no weights) and
// TimestepEmbedding (Linear → SiLU → Linear). The UNet uses both twice: for the timestep
// and, as add_time_proj / add_embedding, for SDXL's size-and-crop conditioning.

import { silu, timestepEmbedding } from '../../ops/elementwise.js';
import { chain, type DType, type Tensor } from '../../tensor.js';
import type { WeightScope } from '../weights.js';
import { Linear } from './layers.js';

export class Timesteps {
  constructor(
    readonly numChannels: number,
    readonly flipSinToCos: boolean,
    readonly freqShift: number,
  ) {}

  /** t (N) float32 timesteps → (N, numChannels) in `dtype` (max_period 10000, scale 1). */
  forward(t: Tensor, dtype: DType): Tensor {
    return timestepEmbedding(t, this.numChannels, { flipSinToCos: this.flipSinToCos, freqShift: this.freqShift, dtype });
  }
}

export class TimestepEmbedding {
  private readonly linear1: Linear;
  private readonly linear2: Linear;

  constructor(w: WeightScope, inChannels: number, timeEmbedDim: number) {
    this.linear1 = new Linear(w.at('linear_1'), inChannels, timeEmbedDim);
    this.linear2 = new Linear(w.at('linear_2'), timeEmbedDim, timeEmbedDim);
  }

  /** x (B, in) → (B, timeEmbedDim). */
  forward(x: Tensor): Tensor {
    return chain(
      x,
      (x) => silu(this.linear1.forward(x)), // (B, D)
      (h) => this.linear2.forward(h), // (B, D)
    );
  }
}
