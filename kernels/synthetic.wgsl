// synthetic — the synthetic real-size weights of test/fixtures/real-size-synthetic/SPEC.md,
// generated where they land, bit for bit as the CPU definition (src/io/synthetic.ts) makes them.
//
// Bindings: 0 params (uniform), 1 dst: array<u32> (read_write), raw bits of the output.
// Params: n = elements of this window, words = invocations (n, or ⌈n / 2⌉ for f16),
//         first = flat index (in the tensor `key`) of the window's element 0,
//         seed = pcgHash(fnv1a32(key)), mulHi / mulLo / mulExp: the float64 multiplier of the
//         tensor's kind as M·2^mulExp with M = mulHi·2^32 + mulLo (2^52 ≤ M < 2^53),
//         one = 1 for norm weights (value 1 + mul·u), else 0 (value mul·u).
// Layout: F16: two halves per u32 word, little-endian, an odd tail's upper half zero;
//         else one f32 per word (the half widened, exactly).
// Specialized on F16 (bool) and FAST (bool: try the 64-bit path first; off only in tests, to
// check the exact path alone). Workgroup: WG × 1 (src/ops/common.ts), grid folded (include grid);
// each invocation writes PER words, WG apart (fewer workgroups: lavapipe pays per workgroup).
// Integer arithmetic only, core WGSL (no shader-f16, no f64): the spec's float64 value
// add + mul·u, u = (h − 2^31) / 2^31, is formed exactly as a 96-bit integer times a power of
// two; each float64 rounding of the spec (the product, then the sum) and the final rounding
// to binary16 (ties to even, subnormals, signed zero) are done as integer shifts with round
// half to even, so no GPU float rounding or subnormal flushing can change a bit. Most elements
// are decided by a 64-bit product first (fastHalfBits), which leaves those near a rounding
// boundary (≈ 2^−18 of them) to the exact path.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

//!include grid

fn pcgHash(x: u32) -> u32 {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

/** The 64-bit product a·b as (low, high) words. */
fn mulWide(a: u32, b: u32) -> vec2<u32> {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p00 = a0 * b0;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return vec2<u32>((p00 & 0xffffu) | (mid << 16u), a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

// 96-bit unsigned integers as vec3<u32> (x the low word).

fn bitLength(v: vec3<u32>) -> u32 {
  if (v.z != 0u) { return 96u - countLeadingZeros(v.z); }
  if (v.y != 0u) { return 64u - countLeadingZeros(v.y); }
  return 32u - countLeadingZeros(v.x);
}

fn shiftRight(v: vec3<u32>, r: u32) -> vec3<u32> {
  if (r >= 96u) { return vec3<u32>(0u); }
  var w = v;
  var s = r;
  if (s >= 64u) {
    w = vec3<u32>(w.z, 0u, 0u);
    s -= 64u;
  } else if (s >= 32u) {
    w = vec3<u32>(w.y, w.z, 0u);
    s -= 32u;
  }
  if (s == 0u) { return w; }
  return vec3<u32>((w.x >> s) | (w.y << (32u - s)), (w.y >> s) | (w.z << (32u - s)), w.z >> s);
}

/** The bits of a word below bit c (c may be ≤ 0 or ≥ 32). */
fn lowMask(c: i32) -> u32 {
  if (c <= 0) { return 0u; }
  if (c >= 32) { return 0xffffffffu; }
  return (1u << u32(c)) - 1u;
}

/** v / 2^r rounded to nearest, ties to even. */
fn shiftRightEven(v: vec3<u32>, r: u32) -> vec3<u32> {
  if (r == 0u) { return v; }
  var q = shiftRight(v, r);
  let half = (shiftRight(v, r - 1u).x & 1u) == 1u;
  let c = i32(r) - 1;
  let sticky = ((v.x & lowMask(c)) | (v.y & lowMask(c - 32)) | (v.z & lowMask(c - 64))) != 0u;
  if (half && (sticky || (q.x & 1u) == 1u)) {
    q.x += 1u;
    if (q.x == 0u) {
      q.y += 1u;
      if (q.y == 0u) { q.z += 1u; }
    }
  }
  return q;
}

fn add96(a: vec3<u32>, b: vec3<u32>) -> vec3<u32> {
  let x = a.x + b.x;
  let c0 = select(0u, 1u, x < a.x);
  let y0 = a.y + b.y;
  let y = y0 + c0;
  let c1 = select(0u, 1u, y0 < a.y) + select(0u, 1u, y < y0);
  return vec3<u32>(x, y, a.z + b.z + c1);
}

/** a − b for a ≥ b. */
fn sub96(a: vec3<u32>, b: vec3<u32>) -> vec3<u32> {
  let b0 = select(0u, 1u, a.x < b.x);
  let y0 = a.y - b.y;
  let b1 = select(0u, 1u, a.y < b.y) + select(0u, 1u, y0 < b0);
  return vec3<u32>(a.x - b.x, y0 - b0, a.z - b.z - b1);
}

fn pow2(n: u32) -> vec3<u32> {
  let bit = 1u << (n & 31u);
  return vec3<u32>(select(0u, bit, n < 32u), select(0u, bit, n >= 32u && n < 64u), select(0u, bit, n >= 64u));
}

/** (v, e) for the value v·2^e rounded to 53 significant bits (a float64 rounding). */
fn roundDouble(v: vec3<u32>, e: i32) -> vec4<u32> {
  let len = bitLength(v);
  if (len <= 53u) { return vec4<u32>(v, bitcast<u32>(e)); }
  return vec4<u32>(shiftRightEven(v, len - 53u), bitcast<u32>(e + i32(len - 53u)));
}

const NONE = 0xffffffffu;

/**
 * The magnitude bits of RN16(RN64(k·mul / 2^31)) from the top 32 bits of mul's M alone, or NONE
 * when that cannot decide. P' = k·(M >> 21) is 2^−21·k·M rounded down by less than k, and
 * float64's rounding of k·M moves it by less than k / 2^21: when P' is more than 2k + 2 (plus a
 * float margin) away from every rounding boundary of binary16 (the midpoints, and the ends of
 * the quantum, where the binade could change), it decides the half; otherwise the exact path.
 */
fn fastHalfBits(k: u32) -> u32 {
  let p = mulWide(k, (params.mulHi << 11u) | (params.mulLo >> 21u));
  let len = select(32u - countLeadingZeros(p.x), 64u - countLeadingZeros(p.y), p.y != 0u);
  let e = params.mulExp - 10; // P' counts units of 2^(mulExp − 31 + 21)
  let exponent = max(i32(len) - 1 + e, -14);
  let r = exponent - 10 - e; // ≥ 20: P' has ≥ 31 bits
  if (r >= 63) { return NONE; }
  let s = u32(r);
  var units: u32;
  var rem: vec2<u32>;
  if (s >= 32u) {
    units = p.y >> (s - 32u);
    rem = vec2<u32>(p.x, p.y & lowMask(r - 32));
  } else {
    units = (p.x >> s) | (p.y << (32u - s));
    rem = vec2<u32>(p.x & lowMask(r), 0u);
  }
  let quantum = bitcast<f32>(u32(r + 127) << 23u);
  let remainder = f32(rem.y) * 4294967296.0 + f32(rem.x);
  let margin = 2.0 * f32(k) + 2.0 + quantum * 9.5367431640625e-7; // + 2^−20 quantum
  if (remainder > margin && abs(remainder - 0.5 * quantum) > margin && quantum - remainder > margin) {
    return (u32(exponent + 14) << 10u) + units + select(0u, 1u, remainder > 0.5 * quantum);
  }
  return NONE;
}

/** The binary16 bits of element `i` of the tensor (SPEC.md §2). */
fn halfBits(i: u32) -> u32 {
  let h = pcgHash(i + params.seed);
  // u = k / 2^31 with k = h − 2^31: |k| and its sign (u is never −0).
  let negative = h < 0x80000000u;
  let k = select(h - 0x80000000u, 0x80000000u - h, negative);
  if (k == 0u) { return select(0u, 0x3c00u, params.one == 1u); }
  if (FAST && params.one == 0u) {
    let fast = fastHalfBits(k);
    if (fast != NONE) { return select(0u, 0x8000u, negative) | fast; }
  }
  // The product |k|·M·2^(mulExp − 31), exact in 85 bits, then rounded as float64 rounds it.
  let lo = mulWide(k, params.mulLo);
  let hi = mulWide(k, params.mulHi);
  let y = lo.y + hi.x;
  let product = vec3<u32>(lo.x, y, hi.y + select(0u, 1u, y < lo.y));
  var r = roundDouble(product, params.mulExp - 31);
  var sign = select(0u, 0x8000u, negative);
  if (params.one == 1u) {
    // 1 ± p at p's scale (the exponent is ≤ −55 for |p| ≤ 0.1, ≥ −95 by the launcher's check),
    // rounded to float64 again; positive.
    let unit = pow2(u32(-bitcast<i32>(r.w)));
    r = roundDouble(select(add96(unit, r.xyz), sub96(unit, r.xyz), negative), bitcast<i32>(r.w));
    sign = 0u;
  }
  // To binary16: the quantum is 2^(e − 10) for a value in [2^e, 2^(e+1)), 2^−24 below 2^−14;
  // the count of quanta carries into the exponent field by itself (2048 = the next binade).
  let e = bitcast<i32>(r.w);
  let exponent = max(i32(bitLength(r.xyz)) - 1 + e, -14);
  let units = shiftRightEven(r.xyz, u32(exponent - 10 - e)).x;
  return sign | ((u32(exponent + 14) << 10u) + units);
}

/** binary16 bits → binary32 bits, exact (subnormal halves are normal floats). */
fn widen(b: u32) -> u32 {
  let sign = (b & 0x8000u) << 16u;
  let e = (b >> 10u) & 0x1fu;
  let m = b & 0x3ffu;
  if (e != 0u) { return sign | ((e + 112u) << 23u) | (m << 13u); }
  if (m == 0u) { return sign; }
  let top = 31u - countLeadingZeros(m); // m = 2^top·(1.f), value m·2^−24
  return sign | ((top + 103u) << 23u) | ((m << (23u - top)) & 0x7fffffu);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let start = workgroupIndex(wg, nwg) * WG * PER + lid;
  for (var j = 0u; j < PER; j++) {
    let w = start + j * WG;
    if (w >= params.words) { return; }
    if (F16) {
      let low = halfBits(params.first + 2u * w);
      let high = select(0u, halfBits(params.first + 2u * w + 1u), 2u * w + 1u < params.n);
      dst[w] = low | (high << 16u);
    } else {
      dst[w] = widen(halfBits(params.first + w));
    }
  }
}
