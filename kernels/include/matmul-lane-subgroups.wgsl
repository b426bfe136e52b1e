// matmul-lane (subgroups) — kernels/matmul.wgsl's DIRECT tiles share a quad of B's columns: of
// every 4 lanes, lane j loads column 4c + j and the others take it by subgroupBroadcast, a
// quarter of the loads. llvmpipe loads even a workgroup-uniform address once per lane inside a
// loop (8 scalar loads per CPU vector), so this is what makes B's reads cheap there
// (BENCHMARKS.md, "Shared weights"). Correct for any subgroup size: WebGPU's are at least 4, so
// lanes 0..3 exist in every subgroup, and all are active here (no invocation has returned; the
// k loop is uniform).

struct Lane {
  @builtin(subgroup_invocation_id) id: u32,
}

// Tile columns 4c .. 4c+3 at k values kk .. kk+3, as vec4s of the 4 columns per k.
fn columnQuad(lane: Lane, bAt: u32, col0: u32, c: u32, kk: u32) -> mat4x4<f32> {
  let own = loadB(bAt, bColumn(col0, 4u * c + lane.id % 4u), kk);
  return transpose(mat4x4<f32>(
    subgroupBroadcast(own, 0u),
    subgroupBroadcast(own, 1u),
    subgroupBroadcast(own, 2u),
    subgroupBroadcast(own, 3u),
  ));
}
