// gelu — exact gelu x·Φ(x) over the math type F (f32 or vec4<f32>), shared by the elementwise
// activations and the matmul's GEGLU epilogue.

// erfc(z) for z ≥ 0: Numerical Recipes' erfcc, fractional error < 1.2e-7 over the whole
// half-line, so gelu keeps its relative accuracy in the negative tail where 1 + erf(x)
// would cancel.
fn erfcNonneg(z: F) -> F {
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
          t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(p - z * z);
}

// x·Φ(x), Φ(x) = erfc(−x/√2)/2 = 1 − erfc(x/√2)/2.
fn geluErf(v: F) -> F {
  let e = 0.5 * erfcNonneg(abs(v) * 0.70710678118654752);
  return v * select(1.0 - e, e, v < F(0.0));
}
