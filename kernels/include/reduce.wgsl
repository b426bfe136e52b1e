// reduce — a workgroup-wide sum shared by the norm kernels. The including kernel declares
// `WG`, its workgroup size (a power of two).

var<workgroup> sums: array<vec2<f32>, WG>;

/** Workgroup-wide sum of v (call from uniform control flow). */
fn sumAll(v: vec2<f32>, tid: u32) -> vec2<f32> {
  sums[tid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) { sums[tid] += sums[tid + s]; }
    workgroupBarrier();
  }
  let total = sums[0];
  workgroupBarrier(); // sums is reused by the next call
  return total;
}
