// conv2d-lane — how kernels/conv2d.wgsl's DIRECT tiles read the weights of 4 output channels:
// here each invocation loads all four itself. With subgroups, conv2d-lane-subgroups shares the
// loads across lanes instead, and Lane is the invocation's subgroup lane; here it holds a
// builtin nothing reads, so main takes a Lane either way.

struct Lane {
  @builtin(global_invocation_id) unused: vec3<u32>,
}

// The weights of output channels n .. n+3 at element `at` of their rows.
fn weightQuad(lane: Lane, n: u32, at: u32) -> vec4<f32> {
  return vec4<f32>(weight(n, at), weight(n + 1u, at), weight(n + 2u, at), weight(n + 3u, at));
}
