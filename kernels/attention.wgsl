// attention — multi-head scaled-dot-product attention, flash style: the Lq×Lk score matrix is
// never stored. Keys and values stream through workgroup memory in tiles of `bk` keys; each
// query keeps a running max m, sum l and output accumulator (online softmax, f32, base 2).
//
// Bindings: 0 params (uniform), 1 q: array<T> (read), 2 k: array<T> (read),
//           3 v: array<T> (read), 4 out: array<T> (read_write).
// Params: lq, lk = query / key counts; heads; d = head dim; causal = 1 masks key j > query i;
//         qOff, qStride, kOff, kStride, vOff, vStride: where q, k and v sit in their rows;
//         qScale = scale·log2(e) (scores come out in base 2); split = invocations per query
//         (ceil(d / DCH)); bk = keys per tile (bk·split·DCH ≤ 4·TILE4, bk ≤ MAX_BK).
// Layout: out (B, lq, heads·d) row-major: head h of token i is the d values at
//         (b·lq + i)·heads·d + h·d. q, k, v are column ranges of wider rows (one projection
//         making q|k|v or k|v side by side): head h of q's token i is at
//         qOff + (b·lq + i)·qStride + h·d, likewise k and v with kOff / kStride, vOff / vStride.
// Workgroup: 64 invocations = 64 / split queries × split parts (any remainder idles). Part p
//         holds columns [p·DCH, p·DCH + DCH) of its query's scaled q row and of its output
//         accumulator in registers, so the per-invocation state stays small for any head dim.
//         Grid: (ceil(lq / (64 / split)), heads, B).
// Per key tile: K and V tiles → workgroup memory as f32, zero past d and past lk; every part
//         writes its partial dot products; with split > 1, part p adds up keys p, p + split, …
//         in place; masked keys (past lk, or causal) are skipped; acc = acc·2^(mOld − m) + Σ p·v.
// No subgroup operations: the softmax's max and sum are not cross-invocation reductions (one
//         invocation runs its query's online softmax over the tile's keys). The one
//         cross-invocation sum, the split parts' dot products, would need a query's parts at
//         known lanes of one subgroup, which WGSL does not promise (local_invocation_index does
//         not map to subgroup lanes, subgroups need not be full); DCH = 64 removes that sum for
//         64-wide heads instead. attention-sg.wgsl is the variant built on subgroups: a whole
//         subgroup per query, its lanes splitting the keys.
// Specialized: T (storage f16 or f32; math is f32), DCH (the slice width, a multiple of 4: a
//         variant) and HEAD_DIM: a head dim fixed at compile time (the d = 64 fast path: d,
//         split and the bounds checks fold into constants) or 0 to read d and split from params.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> out: array<T>;

// THREADS (64), MAX_BK (16) and TILE4 (vec4s per K or V tile: 384, so 2 × 6 KiB + 4 KiB of
// partial dots = 16 KiB) are constants of src/ops/attention.ts, which plans split and bk by them.
const C4: u32 = DCH / 4u; // vec4s in one invocation's slice
const NEG: f32 = -3.0e38; // "no key yet": finite, so m − mNew never makes NaN

var<workgroup> ktile: array<vec4<f32>, TILE4>;
var<workgroup> vtile: array<vec4<f32>, TILE4>;
var<workgroup> partial: array<f32, THREADS * MAX_BK>; // (query, key, part); the total lands in part 0

//!include attention-load

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let fixed = HEAD_DIM != 0u;
  let d = select(params.d, HEAD_DIM, fixed);
  let split = select(params.split, (HEAD_DIM + DCH - 1u) / DCH, fixed);
  let bk = params.bk;
  let bq = THREADS / split;
  let row4 = C4 * split; // vec4s in one zero-padded key row of a tile
  let width = params.heads * d; // out's row stride
  let qi = lid / split;
  let part = lid % split;
  let i = wg.x * bq + qi;
  let seated = qi < bq; // 64 % split invocations idle but share the barriers
  let live = seated && i < params.lq;
  let causal = params.causal != 0u;
  // Keys [0, visible) are unmasked; none for an invocation without a query.
  let visible = select(0u, select(params.lk, min(params.lk, i + 1u), causal), live);

  let qbase = params.qOff + (wg.z * params.lq + i) * params.qStride + wg.y * d;
  var qv: array<vec4<f32>, C4>;
  var acc: array<vec4<f32>, C4>;
  for (var c4 = 0u; c4 < C4; c4++) {
    qv[c4] = select(vec4<f32>(0.0), loadQ(qbase, (part * C4 + c4) * 4u, d) * params.qScale, live);
    acc[c4] = vec4<f32>(0.0);
  }
  var m = NEG;
  var l = 0.0;

  let kbase = params.kOff + wg.z * params.lk * params.kStride + wg.y * d;
  let vbase = params.vOff + wg.z * params.lk * params.vStride + wg.y * d;
  let slots = select(0u, qi * bk * split, seated); // this query's (key, part) slots in `partial`
  // Causal: keys past the workgroup's last query are masked for all of its queries.
  let kend = select(params.lk, min(params.lk, wg.x * bq + bq), causal);
  for (var j0 = 0u; j0 < kend; j0 += bk) {
    for (var t = lid; t < bk * row4; t += THREADS) {
      let key = j0 + t / row4;
      let c = (t % row4) * 4u;
      var kt = vec4<f32>(0.0);
      var vt = vec4<f32>(0.0);
      if (key < params.lk) {
        kt = loadK(kbase + key * params.kStride, c, d);
        vt = loadV(vbase + key * params.vStride, c, d);
      }
      ktile[t] = kt;
      vtile[t] = vt;
    }
    workgroupBarrier();

    for (var j = 0u; j < bk; j++) {
      var s = 0.0;
      for (var c4 = 0u; c4 < C4; c4++) { s += dot(qv[c4], ktile[j * row4 + part * C4 + c4]); }
      if (seated) { partial[slots + j * split + part] = s; }
    }
    if (split > 1u) {
      workgroupBarrier();
      // Only this invocation touches key j's slots here, so the total can overwrite part 0.
      for (var j = part; j < bk && seated; j += split) {
        var total = 0.0;
        for (var p = 0u; p < split; p++) { total += partial[slots + j * split + p]; }
        partial[slots + j * split] = total;
      }
      workgroupBarrier();
    }

    // Loops over all bk keys with masked keys selected away (not a per-query trip count) keep
    // the control flow uniform, so tile reads that are the same for all invocations stay so.
    let jn = min(bk, visible - min(j0, visible)); // keys of this tile the query sees
    var mnew = m;
    for (var j = 0u; j < bk; j++) { mnew = select(mnew, max(mnew, partial[slots + j * split]), j < jn); }
    let correction = exp2(m - mnew); // 0 on the first tile (m = NEG)
    l *= correction;
    for (var c4 = 0u; c4 < C4; c4++) { acc[c4] *= correction; }
    for (var j = 0u; j < bk; j++) {
      let p = select(0.0, exp2(partial[slots + j * split] - mnew), j < jn);
      l += p;
      for (var c4 = 0u; c4 < C4; c4++) { acc[c4] += p * vtile[j * row4 + part * C4 + c4]; }
    }
    m = mnew;
    workgroupBarrier(); // the next tile overwrites ktile, vtile and partial
  }

  if (!live) { return; }
  let obase = (wg.z * params.lq + i) * width + wg.y * d;
  let inv = 1.0 / l;
  for (var c4 = 0u; c4 < C4; c4++) {
    let c = (part * C4 + c4) * 4u;
    let o = acc[c4] * inv;
    for (var e = 0u; e < 4u; e++) { if (c + e < d) { out[obase + c + e] = T(o[e]); } }
  }
}
