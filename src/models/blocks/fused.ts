// Linears fused at load into one matmul: several Linears over the same input on their
// concatenated weights (to_q|to_k|to_v: one (B, L, 3·inner) product), optionally with the
// LayerNorm in front of them folded in: its affine goes into the weights and the bias
// (W·diag(γ), b + W·β, in f32, rounded once), its normalisation into the matmul's loads of x
// (LinearOptions.normEps). The fused weight is derived (WeightRegistry.derive): the checkpoint
// tensors keep their names and LoRA merges, and a reloaded part rebuilds it.

import { mul } from '../../ops/binary.js';
import { cast } from '../../ops/cast.js';
import { concat } from '../../ops/concat.js';
import { linear, type LinearOptions } from '../../ops/matmul.js';
import { type DType, Tensor, tidy } from '../../tensor.js';
import type { Weight, WeightRegistry } from '../weights.js';
import type { LayerNorm, Linear } from './layers.js';

export class FusedLinear {
  readonly weight: Weight;
  readonly bias: Weight | null;
  private readonly eps: number | null;

  /** `linears` (all over the same in-features) as one, outputs in their order; `norm`: the
   *  LayerNorm applied to the input first. `name` labels the derived weight. */
  constructor(registry: WeightRegistry, name: string, linears: readonly Linear[], norm: LayerNorm | null = null) {
    const inFeatures = linears[0]!.weight.shape[1]!;
    const outFeatures = linears.reduce((n, l) => n + l.weight.shape[0]!, 0);
    if (linears.some((l) => l.weight.shape[1] !== inFeatures)) throw new Error(`${name}: the fused Linears take different in-features`);
    const hasBias = norm !== null || linears.some((l) => l.bias !== null);
    const parts = [...linears.map((l) => l.weight), ...linears.flatMap((l) => (l.bias ? [l.bias] : [])), ...(norm ? [norm.weight, norm.bias] : [])];
    // The fused weight is 8-bit where its parts would be (it is quantized once built).
    const outputs: Array<readonly [string, readonly number[], boolean]> = [[`${name}.weight`, [outFeatures, inFeatures], linears[0]!.weight.quantizable]];
    if (hasBias) outputs.push([`${name}.bias`, [outFeatures], false]);
    const built = registry.derive(outputs, parts, (tensors) => {
      const at = (w: Weight): Tensor => tensors[parts.indexOf(w)]!;
      return build(
        linears.map((l) => ({ weight: at(l.weight), bias: l.bias && at(l.bias), rows: l.weight.shape[0]! })),
        norm && { weight: at(norm.weight), bias: at(norm.bias) },
        hasBias,
        `${registry.component}.${name}`,
      );
    });
    this.weight = built[0]!;
    this.bias = built[1] ?? null;
    this.eps = norm?.eps ?? null;
  }

  /** x (..., in) → (..., Σ out) [GEGLU: half that], plus `residual` when given; `imageIn`: x
   *  an image (B, in, H, W) read as its tokens. */
  forward(x: Tensor, options: Pick<LinearOptions, 'residual' | 'geglu' | 'imageIn'> = {}): Tensor {
    return linear(x, this.weight.value, this.bias?.tensor ?? null, { ...options, normEps: this.eps ?? undefined });
  }
}

interface Part {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly rows: number;
}

/** The fused weight (and bias) in the parts' dtype, exact-allocated as weights are. */
function build(parts: readonly Part[], norm: { weight: Tensor; bias: Tensor } | null, hasBias: boolean, label: string): Tensor[] {
  const dtype = parts[0]!.weight.dtype;
  return tidy(() => {
    const f32 = (t: Tensor): Tensor => cast(t, 'f32');
    const weight = concat(parts.map((p) => f32(p.weight)), 0); // (N, K)
    const out = [exactCopy(norm ? mul(weight, f32(norm.weight)) : weight, dtype, `${label}.weight`)];
    if (hasBias) {
      const biases = concat(parts.map((p) => (p.bias ? f32(p.bias) : zeros(p.weight, p.rows))), 0); // (N)
      // b + W·β: LayerNorm's shift through the Linear, f32 accumulation.
      const bias = norm ? linear(f32(norm.bias).reshape([1, norm.bias.size]), weight, biases).reshape([biases.size]) : biases;
      out.push(exactCopy(bias, dtype, `${label}.bias`));
    }
    return out;
  });
}

/** A zero f32 vector of `rows` (a bias for a Linear without one). */
function zeros(like: Tensor, rows: number): Tensor {
  const z = Tensor.empty(like.gpu, [rows], 'f32', 'zero bias');
  z.fill(0);
  return z;
}

/** `t` in `dtype` in an exact (weight) allocation. */
export function exactCopy(t: Tensor, dtype: DType, label: string): Tensor {
  return t.dtype !== dtype ? cast(t, dtype, { label, exact: true }) : concat([t], 0, { label, exact: true });
}
