// float64 reference of kernels/timestep.wgsl.

import { torchExpf } from '../../src/ops/timestep.js';

/**
 * diffusers' get_timestep_embedding as PyTorch runs it: the argument t·freq is float32 (every
 * step rounded as its float32 CPU ops round, exp included: torchExpf), sin and cos then in
 * float64.
 */
export function timestepRef(ts: ArrayLike<number>, dim: number, flip: boolean, shift: number): Float64Array {
  const f = Math.fround;
  const half = Math.floor(dim / 2);
  const out = new Float64Array(ts.length * dim);
  for (let n = 0; n < ts.length; n++) {
    for (let k = 0; k < half; k++) {
      const exponent = f(f(f(-Math.log(10000)) * k) / f(half - shift));
      const arg = f(f(ts[n]!) * torchExpf(exponent));
      const [first, second] = flip ? [Math.cos(arg), Math.sin(arg)] : [Math.sin(arg), Math.cos(arg)];
      out[n * dim + k] = first;
      out[n * dim + half + k] = second;
    }
  }
  return out;
}
