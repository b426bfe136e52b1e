// attention (subgroups) — attention.wgsl's result with one subgroup per query: the subgroup's
// lanes split the keys, and the softmax's max and sum are subgroup reductions. For adapters
// with `subgroups` (the launcher sets SUBGROUPS, which enables the feature); attention.wgsl
// stays the path without.
//
// Bindings, params and layout: as attention.wgsl (split and bk unused).
// Workgroup: THREADS invocations own queries [wg.x·QUERIES, wg.x·QUERIES + QUERIES) of head
//         wg.y of batch wg.z; grid (ceil(lq / QUERIES), heads, B).
// Which subgroup takes which query: WGSL fixes neither the subgroup size (subgroup_size is
//         4…128, known at run time) nor which invocations share a subgroup, and a subgroup need
//         not be full. So the workgroup's queries are a queue: a workgroup atomic counter
//         (zero at the start, as all workgroup memory) that each subgroup's elected lane
//         advances by one, subgroupMax sharing the number it took with the other lanes (which
//         hold 0; a max, unlike subgroupBroadcastFirst, does not rely on the elected lane being
//         the first). Each number is taken once, so each query belongs to exactly one subgroup,
//         whatever the subgroup count or size, and a subgroup keeps taking queries until the
//         queue is past QUERIES or lq.
// Lanes: rank = the lane's place among the subgroup's active lanes and lanes = their count (by
//         subgroupExclusiveAdd / subgroupAdd of 1, not subgroup_invocation_id and
//         subgroup_size, so that an inactive lane leaves no hole in the key split).
// Per query: q (scaled to base 2) and the lane's output accumulator in private arrays (D4
//         vec4s, ≥ the head dim). Keys go by tiles of `lanes`: lane `rank` takes key j0 + rank
//         and computes its full dot product (k and v rows read straight from storage; a
//         query's lanes read different rows, which stay in cache across the workgroup's
//         queries). The tile's max is subgroupMax of the lanes' scores, so the running max m is
//         one value for the whole subgroup; each lane adds its key's p = 2^(s − m) and p·v into
//         its own sum l and accumulator, rescaling them by 2^(mOld − m) when m grows. At the end
//         every lane is relative to the same m, so the sum and each output column are
//         subgroupAdds of the lanes' values (the sum is linear: no reduction per tile); lane
//         `rank` writes columns 4·c4… with c4 ≡ rank (mod lanes). Causal: a query sees keys
//         [0, i]; keys past lk or masked are skipped (score NEG, no p, no v read).
// Uniformity: the subgroup operations sit in loops and branches whose conditions depend only
//         on uniform params and on the shared query number, so they are uniform within the
//         subgroup (what subgroup operations need). WGSL's uniformity analysis only proves
//         workgroup uniformity, so `main` turns its subgroup_uniformity diagnostic off.
// Specialized: T (storage f16 or f32; math is f32) and D4 (the arrays' size: ceil(d / 4)
//         rounded up to a power of two, so few pipelines). The column loops run to ceil(d / 4),
//         a uniform, not a constant: unrolled over a constant head dim with several keys per
//         lane, one pipeline took 85 s to compile on lavapipe.
// Measured (BENCHMARKS.md, "Attention: one subgroup per query"): 0.48–0.97× the tiles' speed
//         on lavapipe, where each lane's own k and v rows cost a gather per column and the
//         tiles' shared-address reads one load; a candidate for `tune`, not a heuristic.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> out: array<T>;

//!include attention-load

// THREADS (64) and QUERIES (16) are constants of src/ops/attention-sg.ts.
const NEG: f32 = -3.0e38; // "no key": finite, so m − mNew never makes NaN

var<workgroup> next: atomic<u32>; // the workgroup's next query (relative to wg.x·QUERIES)

@diagnostic(off, subgroup_uniformity)
@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3<u32>) {
  let d = params.d;
  let n4 = (d + 3u) / 4u; // vec4s in a zero-padded head row
  let rank = subgroupExclusiveAdd(1u);
  let lanes = subgroupAdd(1u);
  let width = params.heads * d; // out's row stride
  let kbase = params.kOff + wg.z * params.lk * params.kStride + wg.y * d;
  let vbase = params.vOff + wg.z * params.lk * params.vStride + wg.y * d;

  loop {
    var r = 0u;
    if (subgroupElect()) { r = atomicAdd(&next, 1u); }
    r = subgroupMax(r);
    let i = wg.x * QUERIES + r;
    if (r >= QUERIES || i >= params.lq) { break; }
    let visible = select(params.lk, min(params.lk, i + 1u), params.causal != 0u); // keys [0, visible)

    let qbase = params.qOff + (wg.z * params.lq + i) * params.qStride + wg.y * d;
    var qv: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var c4 = 0u; c4 < n4; c4++) {
      qv[c4] = loadQ(qbase, c4 * 4u, d) * params.qScale;
      acc[c4] = vec4<f32>(0.0);
    }
    var m = NEG;
    var l = 0.0;
    for (var j0 = 0u; j0 < visible; j0 += lanes) {
      let j = j0 + rank;
      let seen = j < visible;
      var s = NEG;
      if (seen) {
        let row = kbase + j * params.kStride;
        var dot4 = vec4<f32>(0.0);
        for (var c4 = 0u; c4 < n4; c4++) { dot4 += qv[c4] * loadK(row, c4 * 4u, d); }
        s = dot4.x + dot4.y + dot4.z + dot4.w;
      }
      // Key j0 is visible (j0 < visible) and the lane of rank 0 holds it, so mnew > NEG.
      let mnew = max(m, subgroupMax(s));
      if (mnew > m) { // the same in every lane
        let correction = exp2(m - mnew); // 0 on the first tile (m = NEG)
        l *= correction;
        for (var c4 = 0u; c4 < n4; c4++) { acc[c4] *= correction; }
        m = mnew;
      }
      if (seen) {
        let p = exp2(s - m);
        l += p;
        let row = vbase + j * params.vStride;
        for (var c4 = 0u; c4 < n4; c4++) { acc[c4] += p * loadV(row, c4 * 4u, d); }
      }
    }

    // Lane `rank` writes the vec4s c4 ≡ rank (mod lanes) of the summed row.
    let inv = 1.0 / subgroupAdd(l);
    let obase = (wg.z * params.lq + i) * width + wg.y * d;
    for (var c4 = 0u; c4 < n4; c4++) {
      let o = subgroupAdd(acc[c4]) * inv;
      if (c4 % lanes == rank) {
        for (var e = 0u; e < 4u; e++) { if (c4 * 4u + e < d) { out[obase + c4 * 4u + e] = T(o[e]); } }
      }
    }
  }
}
