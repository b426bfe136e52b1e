// timestep — diffusers' get_timestep_embedding: for row n and frequency k < half,
// a = t[n]·freqs[k]; out[n] = [sin a, cos a] ([cos a, sin a] when FLIP), zero-padded to dim.
//
// Bindings: 0 params (uniform), 1 t: array<f32> (read), 2 freqs: array<f32> (read, half
//           values computed on the host exactly as PyTorch does in float32),
//           3 out: array<T> (read_write).
// Params: n = N·dim; dim; half = floor(dim / 2); flip = 1 for [cos, sin].
// Layout: out (N, dim) row-major.
// Specialized on T (f16 | f32). The argument is a float32 product as in PyTorch; sin and
//         cos use their own range reduction and polynomials, because WGSL's are only
//         specified on [−π, π] and timesteps reach 999 radians.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;

//!include grid

// (sin v, cos v) after Cephes' sinf/cosf: v − q·π/2 in three parts (each product exact for
// |q| < 2^13), then minimax polynomials on [−π/4, π/4].
fn sincos(v: f32) -> vec2<f32> {
  let q = round(v * 0.63661977236758134);
  let r = ((v - q * 1.5703125) - q * 4.837512969970703125e-4) - q * 7.54978995489188216e-8;
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  switch (i32(q) & 3) {
    case 0: { return vec2<f32>(s, c); }
    case 1: { return vec2<f32>(c, -s); }
    case 2: { return vec2<f32>(-s, -c); }
    default: { return vec2<f32>(-c, s); }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  let j = i % params.dim;
  if (j >= 2u * params.half) { out[i] = T(0.0); return; } // odd dim: the zero pad
  let a = t[i / params.dim] * freqs[j % params.half];
  let sc = sincos(a);
  let cosine = (j >= params.half) != (params.flip == 1u);
  out[i] = T(select(sc.x, sc.y, cosine));
}
