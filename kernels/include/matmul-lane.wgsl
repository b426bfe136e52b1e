// matmul-lane — how kernels/matmul.wgsl's DIRECT tiles read a quad of B's columns: here each
// invocation loads all four itself. With subgroups, matmul-lane-subgroups shares the loads
// across lanes instead, and Lane is the invocation's subgroup lane; here it holds a builtin
// nothing reads, so main takes a Lane either way.

struct Lane {
  @builtin(global_invocation_id) unused: vec3<u32>,
}

// Tile columns 4c .. 4c+3 at k values kk .. kk+3, as vec4s of the 4 columns per k.
fn columnQuad(lane: Lane, bAt: u32, col0: u32, c: u32, kk: u32) -> mat4x4<f32> {
  return transpose(mat4x4<f32>(
    loadB(bAt, bColumn(col0, 4u * c), kk),
    loadB(bAt, bColumn(col0, 4u * c + 1u), kk),
    loadB(bAt, bColumn(col0, 4u * c + 2u), kk),
    loadB(bAt, bColumn(col0, 4u * c + 3u), kk),
  ));
}
