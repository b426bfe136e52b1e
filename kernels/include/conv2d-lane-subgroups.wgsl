// conv2d-lane (subgroups) — kernels/conv2d.wgsl's DIRECT tiles share the weights of 4 output
// channels: of every 4 lanes, lane j loads channel n + j's and the others take it by
// subgroupBroadcast, a quarter of the loads (llvmpipe loads even a workgroup-uniform address
// once per lane inside a loop: include matmul-lane-subgroups). Correct for any subgroup size:
// WebGPU's are at least 4, so lanes 0..3 exist in every subgroup, and all are active here (a
// workgroup past the grid's tail returns as a whole; the loops are uniform).

struct Lane {
  @builtin(subgroup_invocation_id) id: u32,
}

// The weights of output channels n .. n+3 at element `at` of their rows.
fn weightQuad(lane: Lane, n: u32, at: u32) -> vec4<f32> {
  let own = weight(n + lane.id % 4u, at);
  return vec4<f32>(subgroupBroadcast(own, 0u), subgroupBroadcast(own, 1u), subgroupBroadcast(own, 2u), subgroupBroadcast(own, 3u));
}
