// conv2d — 2-D convolution as an implicit GEMM, per image:
//   out[n, m] = Σ_k w[n, k] · col[k, m] (+ bias[n]) (+ res[n, m]) (+ out[n, m] if ACCUMULATE)
// with M = output pixels m = (oy, ox), N = output channels, K = input channels × kh × kw; col
// is the im2col view of the input, gathered on the fly:
//   col[(c, ky, kx), (oy, ox)] = x[c, oy·stride − padTop + ky, ox·stride − padLeft + kx], 0 outside.
// K is walked taps-outer, channels-inner: for each tap (ky, kx) a thread's input pixel is fixed,
// so gathering needs no index division and consecutive pixels read consecutive addresses.
//
// Bindings: 0 params (uniform),
//           1 x: array<T> (B, C, H, W) window, read
//           2 w: array<T> (O, C, kh, kw), read
//           3 bias: array<T> (O), or (B, O) one per image, read — only if HAS_BIAS (the op
//             binds w there otherwise)
//           4 res: array<T> laid out like out, read — only if RESIDUAL (else w is bound)
//           5 out: array<T> (B, O, Ho, Wo) window, read_write
//           6 q8: array<u32>, read (include q8) — only if Q8 (else w is bound)
// Params: H, W, outW, P = Ho·Wo, C = input channels of this chunk, kh, kw, stride, padTop,
//         padLeft, nOut = output channels of this chunk, nTiles = ceil(nOut / TN);
//         element offsets and strides into the windows: xBase, xImg (all channels · H·W),
//         wBase (first output and input channel of the chunk), wRow (all channels · kh·kw),
//         biasBase, biasImg (0: one bias for all images; O: a bias per image, e.g. a resnet's
//         conv1 bias plus its time embedding), resBase, outBase, outImg (all output channels · P);
//         q8Scales: the word where a Q8 weight's scales start.
// A dispatch covers one window: images × an output-channel chunk × an input-channel chunk
// (the op splits tensors over the binding limit; later input-channel chunks ACCUMULATE).
// Workgroup: WX × WY = (TM / RM) × (TN / RN) threads own a TM × TN output tile (pixels ×
//   channels), RM × RN per thread at stride WX along pixels and WY along channels
//   (conflict-free shared reads, coalesced stores). Grid: (x, y) = M tiles, folded past 65535
//   (include grid); z = N tile + nTiles · image. Two ways to walk K:
// - staged (DIRECT false): per step (one tap, TK channels) the workgroup stages w (TN × TK) and
//   col (TK × TM) in shared memory as S (f32, or f16 for f16 storage and float weights: the
//   values are f16 already, so staging them so is exact); each thread fetches its share of the
//   next step into registers while computing this one.
// - DIRECT (WY = 1, RN = TN, a multiple of 4): no shared memory and no barriers; each thread
//   reads its pixels' inputs, and the TN weights at addresses the same for every thread: with
//   SUBGROUPS each of 4 lanes loads one of every 4 and shares it (include conv2d-lane-subgroups),
//   since llvmpipe (a subgroup of 8 invocations is one CPU vector) loads even a uniform address
//   once per lane inside a loop; without, each thread loads all TN itself.
// Specialized on T (f16 | f32 storage; f32 accumulation), S (staging type), the tile TM, TN,
// RM, RN, TK (the launcher checks the divisibilities below), DIRECT, SUBGROUPS (direct only),
// HAS_BIAS, RESIDUAL, ACCUMULATE, and Q8: the weight is a Q8 weight (O, C·kh·kw) at binding 6
// (include q8, scales from word q8Scales), dequantized as fetched; binding 2 is then a stand-in.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read> res: array<T>;
@group(0) @binding(5) var<storage, read_write> out: array<T>;

const WX: u32 = TM / RM;
const WY: u32 = TN / RN;
const THREADS: u32 = WX * WY;
// Loads per thread and step: THREADS % TK == 0 and THREADS % TM == 0, so a thread fetches one
// channel of w's rows W_ROWS apart, and one pixel of col (fixed for the K walk) at channels
// X_ROWS apart.
const W_ROWS: u32 = THREADS / TK;
const X_ROWS: u32 = max(THREADS / TM, 1u); // DIRECT stages nothing: any value
const LW: u32 = max(TN / W_ROWS, 1u); // DIRECT: 1 (unused)
const LX: u32 = TK / X_ROWS;

//!include grid
//!include q8
//!include conv2d-lane

var<workgroup> tileW: array<S, TN * TK>; // [n][c]
var<workgroup> tileX: array<S, TK * TM>; // [c][m]
var<private> nextW: array<S, LW>;
var<private> nextX: array<S, LX>;

/** What a thread loads, fixed for the whole K walk. */
struct Loader {
  tid: u32,
  n0: u32,   // the tile's first output channel
  m: u32,    // the output pixel whose im2col column this thread gathers
  iy0: i32,  // its input row and column at tap (0, 0)
  ix0: i32,
  xImg: u32, // its image's first element in x
}

/** Fetches step (ky, kx, channels c0 .. c0 + TK) into nextW / nextX, zero outside. */
fn fetch(l: Loader, ky: u32, kx: u32, c0: u32) {
  let khw = params.kh * params.kw;
  let tap = ky * params.kw + kx;
  let cw = c0 + l.tid % TK;
  for (var i = 0u; i < LW; i++) {
    let n = l.n0 + l.tid / TK + W_ROWS * i;
    nextW[i] = S(0.0);
    if (n < params.nOut && cw < params.C) {
      let e = params.wBase + n * params.wRow + cw * khw + tap;
      // biasBase is the chunk's first output channel: the weight row of n is biasBase + n.
      if (Q8) { nextW[i] = S(q8At(e, params.biasBase + n, params.wRow, params.q8Scales)); } else { nextW[i] = S(w[e]); }
    }
  }
  let iy = l.iy0 + i32(ky);
  let ix = l.ix0 + i32(kx);
  let inside = l.m < params.P && iy >= 0 && iy < i32(params.H) && ix >= 0 && ix < i32(params.W);
  let at = l.xImg + u32(iy) * params.W + u32(ix); // read only when inside
  for (var i = 0u; i < LX; i++) {
    let c = c0 + l.tid / TM + X_ROWS * i;
    nextX[i] = S(0.0);
    if (inside && c < params.C) { nextX[i] = S(x[at + c * params.H * params.W]); }
  }
}

/** The staged walk: the workgroup's channels × pixels through shared memory, TK channels of
 *  one tap per step. */
fn tiled(m0: u32, n0: u32, xImg: u32, lid: vec3<u32>, tid: u32) -> array<array<f32, RM>, RN> {
  let m = m0 + tid % TM;
  let oy = m / params.outW;
  let loader = Loader(
    tid, n0, m,
    i32(oy * params.stride) - i32(params.padTop),
    i32((m - oy * params.outW) * params.stride) - i32(params.padLeft),
    xImg,
  );

  var acc: array<array<f32, RM>, RN>;
  let steps = params.kh * params.kw * ((params.C + TK - 1u) / TK);
  var ky = 0u;
  var kx = 0u;
  var c0 = 0u;
  fetch(loader, ky, kx, c0);
  for (var step = 0u; step < steps; step++) {
    for (var i = 0u; i < LW; i++) { tileW[(tid / TK + W_ROWS * i) * TK + tid % TK] = nextW[i]; }
    for (var i = 0u; i < LX; i++) { tileX[(tid / TM + X_ROWS * i) * TM + tid % TM] = nextX[i]; }
    workgroupBarrier();
    c0 += TK;
    if (c0 >= params.C) {
      c0 = 0u;
      kx += 1u;
      if (kx == params.kw) { kx = 0u; ky += 1u; }
    }
    if (step + 1u < steps) { fetch(loader, ky, kx, c0); } // in flight during the FMAs below
    for (var kk = 0u; kk < TK; kk++) {
      var a: array<f32, RN>;
      var b: array<f32, RM>;
      for (var i = 0u; i < RN; i++) { a[i] = f32(tileW[(lid.y + WY * i) * TK + kk]); }
      for (var j = 0u; j < RM; j++) { b[j] = f32(tileX[kk * TM + lid.x + WX * j]); }
      for (var i = 0u; i < RN; i++) {
        for (var j = 0u; j < RM; j++) { acc[i][j] += a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }

  return acc;
}

/** DIRECT: RM pixels × all TN channels per thread, straight from memory, taps outer, channels
 *  inner. Every invocation of the workgroup needs the same weights at the same time (include
 *  conv2d-lane: loaded by each, or with subgroups by one of 4 lanes and shared) and the inputs
 *  of its own pixels; no shared memory, no barriers. */
fn direct(lane: Lane, m0: u32, n0: u32, xImg: u32, lx: u32) -> array<array<f32, RM>, RN> {
  var acc: array<array<f32, RM>, RN>;
  let plane = params.H * params.W;
  let khw = params.kh * params.kw;
  var iy0: array<i32, RM>;
  var ix0: array<i32, RM>;
  for (var j = 0u; j < RM; j++) {
    let m = min(m0 + lx + WX * j, params.P - 1u); // pixels past P compute a copy, never stored
    let oy = m / params.outW;
    iy0[j] = i32(oy * params.stride) - i32(params.padTop);
    ix0[j] = i32((m - oy * params.outW) * params.stride) - i32(params.padLeft);
  }
  for (var ky = 0u; ky < params.kh; ky++) {
    for (var kx = 0u; kx < params.kw; kx++) {
      var at: array<u32, RM>;
      var live: array<bool, RM>;
      for (var j = 0u; j < RM; j++) {
        let iy = iy0[j] + i32(ky);
        let ix = ix0[j] + i32(kx);
        live[j] = iy >= 0 && iy < i32(params.H) && ix >= 0 && ix < i32(params.W);
        at[j] = select(0u, xImg + u32(iy) * params.W + u32(ix), live[j]); // padding reads element 0, then drops it
      }
      let tap = ky * params.kw + kx;
      for (var c = 0u; c < params.C; c++) {
        var b: array<f32, RM>;
        for (var j = 0u; j < RM; j++) { b[j] = select(0.0, f32(x[at[j] + c * plane]), live[j]); }
        // The weights of channels i .. i+3 (include conv2d-lane: loaded here, or shared across lanes).
        for (var i = 0u; i < RN; i += 4u) {
          let a = weightQuad(lane, n0 + i, c * khw + tap);
          for (var e = 0u; e < 4u; e++) {
            for (var j = 0u; j < RM; j++) { acc[i + e][j] += a[e] * b[j]; }
          }
        }
      }
    }
  }
  return acc;
}

// The weight of output channel n (past nOut: the last one's, computed and never stored) at
// element `at` of its row.
fn weight(n: u32, at: u32) -> f32 {
  let row = min(n, params.nOut - 1u);
  let e = params.wBase + row * params.wRow + at;
  if (Q8) { return q8At(e, params.biasBase + row, params.wRow, params.q8Scales); }
  return f32(w[e]);
}

@compute @workgroup_size(WX, WY)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
  lane: Lane,
) {
  let m0 = workgroupIndex(wg, nwg) * TM;
  if (m0 >= params.P) { return; } // the folded grid's tail
  let n0 = (wg.z % params.nTiles) * TN;
  let img = wg.z / params.nTiles;
  let xImg = params.xBase + img * params.xImg;

  var acc: array<array<f32, RM>, RN>; // [channel i][pixel j]
  if (DIRECT) { acc = direct(lane, m0, n0, xImg, lid.x); } else { acc = tiled(m0, n0, xImg, lid, tid); }

  for (var i = 0u; i < RN; i++) {
    let n = n0 + lid.y + WY * i;
    if (n >= params.nOut) { break; }
    var add = 0.0;
    if (HAS_BIAS) { add = f32(bias[params.biasBase + img * params.biasImg + n]); }
    for (var j = 0u; j < RM; j++) {
      let mm = m0 + lid.x + WX * j;
      if (mm >= params.P) { break; }
      let o = img * params.outImg + n * params.P + mm;
      var v = acc[i][j] + add;
      if (RESIDUAL) { v += f32(res[params.resBase + o]); }
      if (ACCUMULATE) { v += f32(out[params.outBase + o]); }
      out[params.outBase + o] = T(v);
    }
  }
}
