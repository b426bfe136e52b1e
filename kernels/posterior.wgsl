// posterior — diffusers' DiagonalGaussianDistribution from the VAE encoder's moments:
//   mean = moments[:, :C], logvar = clamp(moments[:, C:], −30, 20), std = exp(logvar / 2).
//
// Bindings: 0 params (uniform), 1 moments: array<T> (read), 2 mean, 3 logvar, 4 std:
//         array<T> (read_write).
// Params: n = B·C·S (invocations: the elements of each output, S = spatial positions per
//         channel), cs = C·S (one image's half of the moments).
// Layout: contiguous; moments (B, 2C, S) holds each image's mean half, then its logvar half.
// Specialized on T (f16 | f32). Math is f32.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> moments: array<T>;
@group(0) @binding(2) var<storage, read_write> mean: array<T>;
@group(0) @binding(3) var<storage, read_write> logvar: array<T>;
@group(0) @binding(4) var<storage, read_write> stdev: array<T>;

//!include grid

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  let m = (i / params.cs) * 2u * params.cs + i % params.cs; // this element of the mean half
  let lv = clamp(f32(moments[m + params.cs]), -30.0, 20.0);
  mean[i] = moments[m];
  logvar[i] = T(lv);
  stdev[i] = T(exp(0.5 * lv));
}
