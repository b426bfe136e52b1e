// attention (direct) — attention.wgsl's result with one query per invocation and no workgroup
// memory: each invocation holds its query row and output accumulator (64 columns each) and
// streams every key and value row from storage, sharing the loads with its subgroup. Built for
// CPU adapters, as matmul's DIRECT tiles are: llvmpipe loads even a workgroup-uniform address
// once per lane, with a bounds check, so the tiled kernel's reads of the key tile were most of
// its time; here each lane loads a quarter of a row and takes the rest by subgroupBroadcast
// (BENCHMARKS.md, "Attention `direct` and group norm in words of 8 f16").
//
// Bindings, params and layout: as attention.wgsl (split and bk unused; d = 64). q, k, v and out
//         are bound as vec4<u32> words: 8 f16 (HALF) or 4 f32 each, so the launcher requires
//         every offset and stride to be a whole number of words.
// Workgroup: 64 invocations = queries wg.x·64 + lid of head wg.y of batch wg.z; grid
//         (ceil(lq / 64), heads, B). Invocations past lq compute query lq − 1 and store nothing,
//         so every lane stays active through the key loop (the broadcasts read lanes 0..3).
// Sharing: a row is WORDS words; of every 4 lanes, lane j loads words 4t + j (t < WORDS / 4)
//         and each word's quads go to all lanes by subgroupBroadcast from lanes 0..3: correct
//         for any subgroup size (WebGPU's are at least 4, lanes 0..3 exist in every subgroup).
// Softmax: online, base 2 (qScale includes log2 e), one key at a time; the running max m is
//         only raised when a score passes it by more than 8 (FlashAttention-4's lazy
//         rescaling): terms then reach 2^8 at most, far from f32's range, and the 64-column
//         rescale runs a few times per query instead of at every new maximum.
// Causal: keys run to the workgroup's last visible one (a uniform bound, for the broadcasts);
//         a key past a query's own i adds nothing to it.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<u32>>;

//!include f16-bits

const QUADS: u32 = select(1u, 2u, HALF); // quads (4 elements) per word
const WORDS: u32 = 16u / QUADS; // words per 64-element row
const NEG: f32 = -3.0e38; // "no key yet": finite, so m − s never makes NaN
const LAZY: f32 = 8.0; // how far a score may pass m before m is raised (base 2)

alias Row = array<vec4<f32>, 16>;

/** Quad e of a word as f32. */
fn quad(w: vec4<u32>, e: u32) -> vec4<f32> {
  if (HALF) {
    let h = select(w.xy, w.zw, e == 1u);
    return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
  }
  return bitcast<vec4<f32>>(w);
}

/** q·k of the key row at word `at`. */
fn score(lane: u32, at: u32, qv: ptr<function, Row>) -> f32 {
  var s = 0.0;
  for (var t = 0u; t < WORDS / 4u; t++) {
    let w = k[at + 4u * t + lane % 4u];
    for (var e = 0u; e < QUADS; e++) {
      let own = quad(w, e);
      let c = 4u * QUADS * t + e; // quad of lane 0's word; lane j's is c + j·QUADS
      s += dot((*qv)[c], subgroupBroadcast(own, 0u)) + dot((*qv)[c + QUADS], subgroupBroadcast(own, 1u))
        + dot((*qv)[c + 2u * QUADS], subgroupBroadcast(own, 2u)) + dot((*qv)[c + 3u * QUADS], subgroupBroadcast(own, 3u));
    }
  }
  return s;
}

/** acc += p · the value row at word `at`. */
fn addValue(lane: u32, at: u32, p: f32, acc: ptr<function, Row>) {
  for (var t = 0u; t < WORDS / 4u; t++) {
    let w = v[at + 4u * t + lane % 4u];
    for (var e = 0u; e < QUADS; e++) {
      let own = quad(w, e);
      let c = 4u * QUADS * t + e;
      (*acc)[c] += p * subgroupBroadcast(own, 0u);
      (*acc)[c + QUADS] += p * subgroupBroadcast(own, 1u);
      (*acc)[c + 2u * QUADS] += p * subgroupBroadcast(own, 2u);
      (*acc)[c + 3u * QUADS] += p * subgroupBroadcast(own, 3u);
    }
  }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let first = wg.x * 64u;
  let i = min(first + lid, params.lq - 1u);
  let elements = 4u * QUADS; // per word
  let qAt = (params.qOff + (wg.z * params.lq + i) * params.qStride + wg.y * 64u) / elements;
  var qv: Row;
  var acc: Row;
  for (var w = 0u; w < WORDS; w++) {
    let word = q[qAt + w];
    for (var e = 0u; e < QUADS; e++) {
      qv[w * QUADS + e] = quad(word, e) * params.qScale;
      acc[w * QUADS + e] = vec4<f32>(0.0);
    }
  }
  var m = NEG;
  var l = 0.0;

  let causal = params.causal != 0u;
  let visible = select(params.lk, min(params.lk, i + 1u), causal); // keys this query sees
  let kend = select(params.lk, min(params.lk, min(first + 64u, params.lq)), causal);
  let kAt = params.kOff + wg.z * params.lk * params.kStride + wg.y * 64u;
  let vAt = params.vOff + wg.z * params.lk * params.vStride + wg.y * 64u;
  for (var j = 0u; j < kend; j++) {
    let s = score(lane, (kAt + j * params.kStride) / elements, &qv);
    let seen = j < visible;
    if (seen && s > m + LAZY) {
      let correction = exp2(m - s); // 0 on the first key (m = NEG)
      l *= correction;
      for (var c = 0u; c < 16u; c++) { acc[c] *= correction; }
      m = s;
    }
    let p = select(0.0, exp2(s - m), seen);
    l += p;
    addValue(lane, (vAt + j * params.vStride) / elements, p, &acc);
  }

  if (first + lid >= params.lq) { return; }
  let outAt = ((wg.z * params.lq + i) * params.heads + wg.y) * WORDS; // out rows are heads·64 wide
  let inv = 1.0 / l;
  for (var w = 0u; w < WORDS; w++) {
    if (HALF) {
      out[outAt + w] = vec4<u32>(packHalves(acc[2u * w] * inv), packHalves(acc[2u * w + 1u] * inv));
    } else {
      out[outAt + w] = bitcast<vec4<u32>>(acc[w] * inv);
    }
  }
}
