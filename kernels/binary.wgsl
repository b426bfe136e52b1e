// binary — out = α·a + β·b (MODE 0: add, axpby) or a·b (MODE 1: mul), with b broadcast onto
// a's shape (NumPy rules, b right-aligned).
//
// Bindings: 0 params (uniform), 1 a: array<S> (read), 2 b: array<SB> (read),
//           3 out: array<S> (read_write).
// Params: n = units of S in out (this window); start = a's element index of the window's
//         first element; bStart = b's element index its binding starts at; alpha, beta;
//         d0..d5 = out's dims collapsed where b's broadcast pattern allows (d0 innermost,
//         unused dims 1); s0..s5 = b's element stride along each (0 where b broadcasts).
// Layout: contiguous row-major. W = 4 (S = vec4<T>) when d0 is a multiple of 4; b is then
//         either contiguous along d0 (SB = vec4<T>, BW = 4) or constant along it (SB = T,
//         BW = 1, splatted). W = 1: S = SB = T.
// Specialized on MODE, T (f16 | f32 storage), S / SB (a's and b's storage elements), F / FB
//         (the f32 math types of their widths), W / BW (the widths). Math is f32.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<S>;
@group(0) @binding(2) var<storage, read> b: array<SB>;
@group(0) @binding(3) var<storage, read_write> out: array<S>;

//!include grid

// b's element offset contributed by one collapsed dim; `rest` moves on to the next dim.
fn dimOffset(rest: ptr<function, u32>, size: u32, stride: u32) -> u32 {
  let c = *rest % size;
  *rest = *rest / size;
  return c * stride;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  var rest = params.start + i * W; // a's element index of this invocation's first element
  var j = dimOffset(&rest, params.d0, params.s0);
  j += dimOffset(&rest, params.d1, params.s1);
  j += dimOffset(&rest, params.d2, params.s2);
  j += dimOffset(&rest, params.d3, params.s3);
  j += dimOffset(&rest, params.d4, params.s4);
  j += dimOffset(&rest, params.d5, params.s5);
  let av = F(a[i]);
  let bv = F(FB(b[(j - params.bStart) / BW]));
  if (MODE == 0u) {
    out[i] = S(params.alpha * av + params.beta * bv);
  } else {
    out[i] = S(av * bv);
  }
}
