// euler — the Euler (ancestral) scheduler's elementwise arithmetic on the f32 latents, with the
// step's numbers read from a small buffer rather than packed as uniforms, so a replayed step
// (src/gpu/replay.ts) reads the values of the step it runs:
//   MODE 0 scale_model_input   out = x·c[0]                      (c[0] = 1 / √(σ² + 1))
//   MODE 1 step                out = (x + ε·c[1]) + noise·c[2]   (c[1] = σ_down − σ, c[2] = σ_up;
//                              NOISE false: out = x + ε·c[1], plain Euler)
//
// Bindings: 0 params (uniform), 1 x: array<f32> (read), 2 c: array<f32> (read, the step's
//         [input scale, dt, σ_up]), 3 eps: array<f32> (read), 4 noise: array<f32> (read),
//         5 out: array<f32> (read_write). MODE 0 binds x as eps and noise (read, unused);
//         MODE 1 without noise binds x as noise.
// Params: n = elements.
// Layout: contiguous; x, eps, noise and out of one shape.
// Specialized on MODE and NOISE. f32 only: the latents stay f32 whatever the UNet's dtype, as
//         in diffusers; each sum is rounded to f32 as the axpby kernel it replaces rounds it.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read> eps: array<f32>;
@group(0) @binding(4) var<storage, read> noise: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

//!include grid

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  if (MODE == 0u) {
    out[i] = x[i] * c[0];
    return;
  }
  let moved = x[i] + eps[i] * c[1];
  out[i] = select(moved, moved + noise[i] * c[2], NOISE);
}
