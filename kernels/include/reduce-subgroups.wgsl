// reduce (subgroups) — reduce.wgsl's workgroup-wide sum by subgroup operations, taken instead of
// it where the dispatch defines SUBGROUPS (which also enables the feature): two barriers
// instead of log2(WG) + 1. The including kernel declares `WG`, its workgroup size.

var<workgroup> sums: array<vec2<f32>, WG>;

/** Workgroup-wide sum of v (call from uniform control flow with every invocation present). */
fn sumAll(v: vec2<f32>, tid: u32) -> vec2<f32> {
  // Each subgroup's total lands in its elected invocation's slot (zeros elsewhere, since
  // WGSL does not promise which invocations share a subgroup); then every subgroup sums all
  // slots, strided over its lanes — the same order in every subgroup, so all agree.
  let s = subgroupAdd(v);
  sums[tid] = select(vec2<f32>(0.0), s, subgroupElect());
  workgroupBarrier();
  let lane = subgroupExclusiveAdd(1u);
  let size = subgroupAdd(1u);
  var t = vec2<f32>(0.0);
  for (var k = 0u; k < WG; k += size) {
    if (k + lane < WG) { t += sums[k + lane]; }
  }
  let total = subgroupAdd(t);
  workgroupBarrier(); // sums is reused by the next call
  return total;
}
