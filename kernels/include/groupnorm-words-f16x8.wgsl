// groupnorm-words-f16x8 — kernels/groupnorm.wgsl's word access for 8 f16 per vec4<u32> word
// (WIDTH 8, where S % 8 = 0), in two quads of F = vec4<f32>. The widest word a lane can load:
// a CPU driver loads and bounds-checks storage per lane and 32-bit component, so per element
// this is a quarter of the u32 pairs' checks, and on a GPU a 16-byte access. The stores round
// by include f16-bits (llvmpipe's own f32 → f16 took a third of the kernel's time there).
// Prepended by src/ops/groupnorm.ts.

//!include f16-bits

fn lowQuad(w: vec4<u32>) -> vec4<f32> { return vec4<f32>(bitcast<vec4<f16>>(w.xy)); }
fn highQuad(w: vec4<u32>) -> vec4<f32> { return vec4<f32>(bitcast<vec4<f16>>(w.zw)); }

fn hsum(v: vec4<f32>) -> f32 { return v.x + v.y + v.z + v.w; }

fn firstElement(p: u32) -> f32 { return lowQuad(x[p]).x; }

fn wordSums(p: u32, k: f32) -> vec2<f32> {
  let w = x[p];
  return deviationSums(lowQuad(w), k) + deviationSums(highQuad(w), k);
}

/** Normalises word p of x into word q of out. */
fn normalizeWord(p: u32, q: u32, mean: f32, a: f32, b: f32) {
  let w = x[p];
  out[q] = vec4<u32>(packHalves(normalized(lowQuad(w), mean, a, b)), packHalves(normalized(highQuad(w), mean, a, b)));
}
