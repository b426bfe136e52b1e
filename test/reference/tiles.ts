// float64 reference of kernels/tiles.wgsl: cropping a window, blending a tile with ramps.

/** Weight of position p in a window of n with ramps of `before` / `after` (0: none). */
export function rampRef(p: number, n: number, before: number, after: number): number {
  let v = 1;
  if (before > 0 && p < before) v = p / before;
  if (after > 0 && n - p <= after) v = Math.min(v, (n - p) / after);
  return v;
}

/** x (B, C, H, W) → images [image, image + images), rows [y, y + h), columns [x, x + w). */
export function cropRef(
  x: ArrayLike<number>, [, C, H, W]: readonly number[],
  win: { readonly image: number; readonly images: number; readonly y: number; readonly x: number; readonly h: number; readonly w: number },
): Float32Array {
  const out = new Float32Array(win.images * C! * win.h * win.w);
  let i = 0;
  for (let b = 0; b < win.images; b++) for (let c = 0; c < C!; c++) for (let y = 0; y < win.h; y++) for (let xx = 0; xx < win.w; xx++) {
    out[i++] = x[(((win.image + b) * C! + c) * H! + win.y + y) * W! + win.x + xx]!;
  }
  return out;
}

/** dst (B, C, H, W) plus `tile` (n, C, h, w) weighted by the ramps, at images from `at.image`
 *  and the window at (at.y, at.x). */
export function blendRef(
  dst: ArrayLike<number>, [, C, H, W]: readonly number[], tile: ArrayLike<number>, [n, , h, w]: readonly number[],
  at: { readonly image: number; readonly y: number; readonly x: number },
  ramps: { readonly top: number; readonly bottom: number; readonly left: number; readonly right: number },
): Float64Array {
  const out = Float64Array.from(dst);
  for (let b = 0; b < n!; b++) for (let c = 0; c < C!; c++) for (let y = 0; y < h!; y++) for (let x = 0; x < w!; x++) {
    const weight = rampRef(y, h!, ramps.top, ramps.bottom) * rampRef(x, w!, ramps.left, ramps.right);
    out[(((at.image + b) * C! + c) * H! + at.y + y) * W! + at.x + x]! += weight * tile[((b * C! + c) * h! + y) * w! + x]!;
  }
  return out;
}
