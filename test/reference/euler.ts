// float64 reference of kernels/euler.wgsl: the scheduler's steps as written, each result
// rounded to f32 once (the stored latents are f32).

const f = Math.fround;

/** scale_model_input: x · c[0]. */
export function scaleModelInputRef(x: ArrayLike<number>, c: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v) => f(v * c[0]!));
}

/** (x + ε·c[1]) + noise·c[2], or x + ε·c[1] without noise. */
export function eulerStepRef(x: ArrayLike<number>, eps: ArrayLike<number>, noise: ArrayLike<number> | null, c: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v, i) => f(v + eps[i]! * c[1]! + (noise ? noise[i]! * c[2]! : 0)));
}
