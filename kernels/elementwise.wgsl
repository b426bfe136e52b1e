// elementwise — activations, one output element (or vec4 of them) per invocation:
//   MODE 0 silu x·σ(x)   1 gelu x·Φ(x) (exact, via erfc)   2 gelu tanh approximation
//   MODE 3 quick gelu x·σ(1.702x)   4 scale α·x
//   (GEGLU is the matmul's epilogue: kernels/matmul.wgsl.)
//
// Bindings: 0 params (uniform), 1 x: array<S> (read), 2 out: array<S> (read_write).
// Params: n = units of S in out (this window); alpha = MODE 4's α.
// Layout: contiguous row-major. S is T (W = 1) or vec4<T> (W = 4: the op picks it when the
//         length is a multiple of 4).
// Specialized on MODE, T (storage f16 | f32), S (T or vec4<T>), F (the f32 math type of the
//         same width: f32 or vec4<f32>). Math is f32 whatever T is.
// Workgroup: WG × 1 (src/ops/common.ts); the grid may be folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<S>;
@group(0) @binding(2) var<storage, read_write> out: array<S>;

//!include grid

// σ(v) through e^(−|v|), which never overflows: no tanh (NaN for large |v| on some
// backends), and the negative tails stay accurate until the result itself underflows.
fn sigmoid(v: F) -> F {
  let e = exp(-abs(v));
  return select(F(1.0), e, v < F(0.0)) / (1.0 + e);
}

//!include gelu

// 0.5·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³).
fn geluTanh(v: F) -> F {
  return v * sigmoid(1.5957691216057308 * (v + 0.044715 * v * v * v));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroupIndex(wg, nwg) * WG + lid;
  if (i >= params.n) { return; }
  let v = F(x[i]);
  var r: F;
  switch MODE {
    case 0u: { r = v * sigmoid(v); }
    case 1u: { r = geluErf(v); }
    case 2u: { r = geluTanh(v); }
    case 3u: { r = v * sigmoid(1.702 * v); }
    default: { r = params.alpha * v; }
  }
  out[i] = S(r);
}
