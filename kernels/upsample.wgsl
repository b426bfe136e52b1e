// upsample — nearest-neighbour 2× upsampling of NCHW planes: out[p, y, x] = x[p, y/2, x/2].
//
// Bindings: 0 params (uniform), 1 src: array<T> (read), 2 out: array<vec2<T>> (read_write).
// Params: n = pairs of out elements (this window: whole planes); width, height = the input
//         plane's W and H.
// Layout: planes of H·W in, 2H·2W out, contiguous. Each invocation writes one pair of
//         horizontally adjacent outputs (2W is even, so pairs never straddle rows), which
//         both copy the same input element.
// Specialized on T (f16 | f32). Values are copied, never converted.
// Workgroup: 256 × 1; the grid may be folded into (x, y), see foldWorkgroups.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<vec2<T>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.n) { return; }
  let x = i % params.width; // the pair's index in its output row is its input column
  let rows = i / params.width; // output rows before this one, over all planes
  let y = rows % (2u * params.height);
  let plane = rows / (2u * params.height);
  out[i] = vec2<T>(src[(plane * params.height + y / 2u) * params.width + x]);
}
