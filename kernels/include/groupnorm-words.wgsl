// groupnorm-words — kernels/groupnorm.wgsl's word access for words of WIDTH = 1 or 2 elements
// (2 where S is even), either dtype: W is the bound word (T, vec2<f32>, or u32 for two f16,
// which a CPU driver loads with one 32-bit load instead of two 16-bit ones), S the vector of
// WIDTH T, F the f32 math type of the same width. Prepended by src/ops/groupnorm.ts.

// Word p of x as f32 (bitcast: the identity but for f16 pairs bound as u32).
fn load(p: u32) -> F { return F(bitcast<S>(x[p])); }

fn hsum(v: F) -> f32 {
  let w = vec2<f32>(v); // (v, v) for a scalar
  return select(w.x, w.x + w.y, WIDTH == 2u);
}

fn firstElement(p: u32) -> f32 { return vec2<f32>(load(p)).x; }

fn wordSums(p: u32, k: f32) -> vec2<f32> { return deviationSums(load(p), k); }

/** Normalises word p of x into word q of out. */
fn normalizeWord(p: u32, q: u32, mean: f32, a: f32, b: f32) {
  out[q] = bitcast<W>(S(normalized(load(p), mean, a, b)));
}
