// float64 reference of kernels/posterior.wgsl.

/** moments (B, 2C·S) → mean, logvar clamped to [−30, 20], std = exp(logvar / 2), each (B, C·S);
 *  `clamped` counts the logvars the clamp changed. */
export function posteriorRef(moments: ArrayLike<number>, batch: number): { mean: Float64Array; logvar: Float64Array; std: Float64Array; clamped: number } {
  const cs = moments.length / batch / 2;
  const n = batch * cs;
  const [mean, logvar, std] = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  let clamped = 0;
  for (let b = 0; b < batch; b++) {
    for (let k = 0; k < cs; k++) {
      const i = b * cs + k;
      mean[i] = moments[b * 2 * cs + k]!;
      const raw = moments[b * 2 * cs + cs + k]!;
      logvar[i] = Math.min(20, Math.max(-30, raw));
      if (logvar[i] !== raw) clamped++;
      std[i] = Math.exp(logvar[i]! / 2);
    }
  }
  return { mean, logvar, std, clamped };
}
