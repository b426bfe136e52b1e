// attention-load — four consecutive head columns of q, k or v (the attention kernels' bindings)
// from column c of the row at `base`, as f32, zero at and past column d (the head dim need not
// be a multiple of 4).

fn loadQ(base: u32, c: u32, d: u32) -> vec4<f32> {
  if (c + 3u < d) { return vec4<f32>(f32(q[base + c]), f32(q[base + c + 1u]), f32(q[base + c + 2u]), f32(q[base + c + 3u])); }
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { if (c + e < d) { r[e] = f32(q[base + c + e]); } }
  return r;
}

fn loadK(base: u32, c: u32, d: u32) -> vec4<f32> {
  if (c + 3u < d) { return vec4<f32>(f32(k[base + c]), f32(k[base + c + 1u]), f32(k[base + c + 2u]), f32(k[base + c + 3u])); }
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { if (c + e < d) { r[e] = f32(k[base + c + e]); } }
  return r;
}

fn loadV(base: u32, c: u32, d: u32) -> vec4<f32> {
  if (c + 3u < d) { return vec4<f32>(f32(v[base + c]), f32(v[base + c + 1u]), f32(v[base + c + 2u]), f32(v[base + c + 3u])); }
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { if (c + e < d) { r[e] = f32(v[base + c + e]); } }
  return r;
}
