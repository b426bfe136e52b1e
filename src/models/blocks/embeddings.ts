// diffusers' Timesteps (sinusoidal features of float timesteps, no weights) and
// TimestepEmbedding (Linear → SiLU → Linear). The UNet uses both twice: for the timestep
// and, as add_time_proj / add_embedding, for SDXL's size-and-crop conditioning.

import { silu } from '../../ops/elementwise.js';
import { timestepEmbedding, timestepFrequencies } from '../../ops/timestep.js';
import { chain, type DType, Tensor } from '../../tensor.js';
import type { WeightScope } from '../weights.js';
import { Linear } from './layers.js';

export class Timesteps {
  /** The frequency table on the model's device: uploaded by the first forward, then kept
   *  (a few hundred bytes every denoising step reuses; exact, like the weights). */
  private frequencies: Tensor | null = null;

  constructor(
    readonly numChannels: number,
    readonly flipSinToCos: boolean,
    readonly freqShift: number,
  ) {}

  /** t (N) float32 timesteps → (N, numChannels) in `dtype` (max_period 10000, scale 1). */
  forward(t: Tensor, dtype: DType): Tensor {
    if (!this.frequencies) {
      const values = timestepFrequencies(Math.floor(this.numChannels / 2), this.freqShift);
      this.frequencies = Tensor.upload(t.gpu, values, 'f32', [values.length], 'f32', { label: 'timestep frequencies', exact: true });
    }
    return timestepEmbedding(t, this.frequencies, this.numChannels, { flipSinToCos: this.flipSinToCos, dtype });
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
