// float64 reference of kernels/elementwise.wgsl: the activations, written plainly.

/** erf by its Taylor series (|z| < 2.5, where it converges without cancellation trouble). */
function erfSeries(z: number): number {
  let term = z;
  let sum = z;
  for (let n = 1; Math.abs(term) > 1e-18 * Math.abs(sum); n++) {
    term *= (-z * z) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** erfc(z) = 1 − erf(z) in float64, accurate in both tails (continued fraction for z ≥ 2.5). */
export function erfc(z: number): number {
  if (z < -2.5) return 2 - erfc(-z);
  if (z < 2.5) return 1 - erfSeries(z);
  let k = z;
  for (let n = 200; n >= 1; n--) k = z + n / 2 / k;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * k);
}

export const silu = (x: number): number => x / (1 + Math.exp(-x));
export const gelu = (x: number): number => x * 0.5 * erfc(-x / Math.SQRT2);
/** 0.5·x·(1 + tanh u) written as x / (1 + e^(−2u)): the same number without the float64
 *  cancellation of 1 + tanh u in the negative tail. */
export const geluTanh = (x: number): number => x / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
export const quickGelu = (x: number): number => x / (1 + Math.exp(-1.702 * x));
