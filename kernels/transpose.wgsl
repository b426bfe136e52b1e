// transpose — swaps the last two dims of a batch of matrices: (B, X, Y) → (B, Y, X).
//
// Bindings: 0 params (uniform), 1 src: array<T> (read), 2 out: array<T> (read_write).
// Params: rows = X, cols = Y, tilesX = ceil(Y / TILE) (tiles across a source row),
//         tilesY = ceil(X / TILE), tiles = B·tilesX·tilesY.
// Layout: row-major. One workgroup per TILE×TILE tile (TILE = 32, src/ops/transpose.ts): it reads the tile along source rows and
//         writes it along output rows through workgroup memory (a TILE + 1 element row pitch keeps
//         the column reads off a single bank), so both global accesses are contiguous.
// Specialized on T (f16 | f32). Values are copied, never converted.
// Workgroup: TILE × 8, each invocation moving TILE / 8 elements; one workgroup per tile, the
//         tile index folded into (x, y) (include grid).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;

//!include grid

const PITCH = TILE + 1u;
var<workgroup> tile: array<T, TILE * PITCH>;

@compute @workgroup_size(TILE, 8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = workgroupIndex(wid, nwg);
  if (t >= params.tiles) { return; } // uniform per workgroup: the barrier below stays legal
  let perMatrix = params.tilesX * params.tilesY;
  let r0 = (t % perMatrix) / params.tilesX * TILE; // first source row of the tile
  let c0 = (t % perMatrix) % params.tilesX * TILE; // first source column
  let base = (t / perMatrix) * params.rows * params.cols;
  for (var k = 0u; k < TILE; k += 8u) {
    let r = r0 + lid.y + k;
    let c = c0 + lid.x;
    if (r < params.rows && c < params.cols) { tile[(lid.y + k) * PITCH + lid.x] = src[base + r * params.cols + c]; }
  }
  workgroupBarrier();
  for (var k = 0u; k < TILE; k += 8u) {
    let c = c0 + lid.y + k; // output row = source column
    let r = r0 + lid.x;
    if (c < params.cols && r < params.rows) { out[base + c * params.rows + r] = tile[lid.x * PITCH + lid.y + k]; }
  }
}
