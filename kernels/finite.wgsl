// finite — counts the values of a tensor that are not finite (NaN or ±Inf), so weights are
// checked where they land on the GPU, in one pass over them and one readback per network.
//
// Bindings: 0 params (uniform), 1 src: array<u32> (read), 2 counts: array<atomic<u32>> (read_write).
// Params: n = elements in this window, words = ceil(n · bytes per element / 4), slot = the
//         index in counts that this tensor's count is added to.
// Layout: elements packed little-endian, two f16 or one f32 per u32 word; a half beyond n in
//         the last word (an odd f16 tail) is not counted.
// Specialized on HALF: f16 elements (true) or f32 (false).
// Workgroup: WG × 1 (include grid: the grid may be folded); each workgroup covers WG · PER
//            (a kernel constant)
//            consecutive words, invocation lid the words lid, lid + WG, … (coalesced); an
//            invocation that found any adds its count to counts[slot] (atomics only where a
//            tensor is bad; no barrier, which costs most on a software adapter).
// Tests the bits, not the values: WGSL lets an implementation assume floats are finite, so
// isNan-style tests on values may be folded away; an all-ones exponent is exactly NaN or ±Inf.
// Core WGSL only: works without shader-f16.

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;

//!include grid

fn notFinite(bits: u32, exponent: u32) -> u32 {
  return select(0u, 1u, (bits & exponent) == exponent);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let first = workgroupIndex(wg, nwg) * WG * PER + lid;
  var count = 0u;
  for (var k = 0u; k < PER; k++) {
    let i = first + k * WG;
    if (i >= params.words) { break; }
    let w = src[i];
    if (HALF) {
      count += notFinite(w, 0x7c00u);
      if (2u * i + 1u < params.n) { count += notFinite(w >> 16u, 0x7c00u); }
    } else {
      count += notFinite(w, 0x7f800000u);
    }
  }
  if (count > 0u) { atomicAdd(&counts[params.slot], count); }
}
