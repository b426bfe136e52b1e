// conv2d — 2-D convolution as an implicit GEMM, per image:
//   out[n, m] = Σ_k w[n, k] · col[k, m] (+ bias[n]) (+ res[n, m]) (+ out[n, m] if ACCUMULATE)
// with M = output pixels m = (oy, ox), N = output channels, K = input channels × kh × kw in
// the weight's (c, ky, kx) order; col is the im2col view of the input, gathered on the fly:
// col[(c, ky, kx), (oy, ox)] = x[c, oy·stride − padTop + ky, ox·stride − padLeft + kx], 0 outside.
//
// Bindings: 0 params (uniform),
//           1 x: array<T> (B, C, H, W) window, read
//           2 w: array<T> (O, C, kh, kw), read
//           3 bias: array<T> (O), read — only if HAS_BIAS (the op binds w there otherwise)
//           4 res: array<T> laid out like out, read — only if RESIDUAL (else w is bound)
//           5 out: array<T> (B, O, Ho, Wo) window, read_write
// Params: H, W, outW, P = Ho·Wo, K = channels of this chunk × kh·kw, kh, kw, stride, padTop,
//         padLeft, nOut = output channels of this chunk, nTiles = ceil(nOut / TN);
//         element offsets and strides into the windows: xBase, xImg (C·H·W), wBase, wRow
//         (C·kh·kw), biasBase, resBase, outBase, outImg (O·P).
// A dispatch covers one window: images × an output-channel chunk × an input-channel chunk
// (the op splits tensors over the binding limit; later input-channel chunks ACCUMULATE).
// Workgroup: 16 × 16 threads own a TM × TN = 64 × 64 output tile, 4 × 4 per thread with
//   stride 16 (conflict-free shared reads, coalesced stores); per TK = 16 slice of K the
//   workgroup stages w (TN × TK) and col (TK × TM) in shared memory as f32.
//   Grid: (x, y) = M tiles, folded past 65535; z = N tile + nTiles · image.
// Specialized on T (f16 | f32 storage; f32 accumulation), HAS_BIAS, RESIDUAL, ACCUMULATE.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> res: array<T>;
@group(0) @binding(5) var<storage, read_write> out: array<T>;

const TM = 64u;
const TN = 64u;
const TK = 16u;

var<workgroup> tileW: array<f32, 1024>; // [n][k]: TN × TK
var<workgroup> tileX: array<f32, 1024>; // [k][m]: TK × TM

@compute @workgroup_size(16, 16)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let m0 = (wg.x + wg.y * nwg.x) * TM;
  if (m0 >= params.P) { return; } // the folded grid's tail
  let n0 = (wg.z % params.nTiles) * TN;
  let img = wg.z / params.nTiles;
  let khw = params.kh * params.kw;

  // The im2col column this thread gathers stays fixed over the K loop: decompose it once.
  let lm = tid % TM;
  let m = m0 + lm;
  let oy = m / params.outW;
  let iy0 = i32(oy * params.stride) - i32(params.padTop);
  let ix0 = i32((m - oy * params.outW) * params.stride) - i32(params.padLeft);
  let xImg = params.xBase + img * params.xImg;
  let lk = tid % TK;

  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < params.K; k0 += TK) {
    for (var i = 0u; i < 4u; i++) {
      let ln = tid / TK + 16u * i;
      let n = n0 + ln;
      let k = k0 + lk;
      var v = 0.0;
      if (n < params.nOut && k < params.K) { v = f32(w[params.wBase + n * params.wRow + k]); }
      tileW[ln * TK + lk] = v;
    }
    for (var i = 0u; i < 4u; i++) {
      let lkk = tid / TM + 4u * i;
      let k = k0 + lkk;
      var v = 0.0;
      if (m < params.P && k < params.K) {
        let c = k / khw;
        let r = k - c * khw;
        let ky = r / params.kw;
        let iy = iy0 + i32(ky);
        let ix = ix0 + i32(r - ky * params.kw);
        if (iy >= 0 && iy < i32(params.H) && ix >= 0 && ix < i32(params.W)) {
          v = f32(x[xImg + (c * params.H + u32(iy)) * params.W + u32(ix)]);
        }
      }
      tileX[lkk * TM + lm] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let a = vec4<f32>(tileW[lid.y * TK + kk], tileW[(lid.y + 16u) * TK + kk], tileW[(lid.y + 32u) * TK + kk], tileW[(lid.y + 48u) * TK + kk]);
      let b = vec4<f32>(tileX[kk * TM + lid.x], tileX[kk * TM + lid.x + 16u], tileX[kk * TM + lid.x + 32u], tileX[kk * TM + lid.x + 48u]);
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let n = n0 + lid.y + 16u * i;
    if (n >= params.nOut) { break; }
    var add = 0.0;
    if (HAS_BIAS) { add = f32(bias[params.biasBase + n]); }
    for (var j = 0u; j < 4u; j++) {
      let mm = m0 + lid.x + 16u * j;
      if (mm >= params.P) { break; }
      let o = img * params.outImg + n * params.P + mm;
      var v = acc[i][j] + add;
      if (RESIDUAL) { v += f32(res[params.resBase + o]); }
      if (ACCUMULATE) { v += f32(out[params.outBase + o]); }
      out[params.outBase + o] = T(v);
    }
  }
}
