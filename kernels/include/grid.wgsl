// grid — the index of this workgroup in a 1-D grid that foldWorkgroups (src/gpu/runtime.ts)
// folded into (x, y) to stay under the per-dimension limit. Kernels of WG invocations per
// workgroup index their element as workgroupIndex(wg, nwg) * WG + lid.

fn workgroupIndex(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wg.x + wg.y * nwg.x;
}
