// Spatial windows of NCHW tensors (kernels/tiles.wgsl), for the VAE's tiled decode: crop a
// latent tile out, and blend a decoded tile into the image with linear ramps over the overlaps.

import source from '../../kernels/tiles.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { commonDtype, grid, WG } from './common.js';
import { bindWhole } from './windows.js';

const kernel = defineKernel({
  name: 'tiles',
  source,
  layout: uniforms(
    ['n', 'u32'], ['C', 'u32'], ['h', 'u32'], ['w', 'u32'],
    ['srcH', 'u32'], ['srcW', 'u32'], ['srcB0', 'u32'], ['srcY', 'u32'], ['srcX', 'u32'],
    ['dstH', 'u32'], ['dstW', 'u32'], ['dstB0', 'u32'], ['dstY', 'u32'], ['dstX', 'u32'],
    ['rampTop', 'u32'], ['rampBottom', 'u32'], ['rampLeft', 'u32'], ['rampRight', 'u32'],
  ),
  constants: { WG },
});

/** A window of an NCHW tensor: images [image, image + images), rows [y, y + h), columns [x, x + w). */
export interface SpatialWindow {
  readonly image: number;
  readonly images: number;
  readonly y: number;
  readonly x: number;
  readonly h: number;
  readonly w: number;
}

/** Widths in pixels of the linear ramps at a window's edges (0: no ramp on that side). */
export interface Ramps {
  readonly top: number;
  readonly bottom: number;
  readonly left: number;
  readonly right: number;
}

const NO_RAMPS: Ramps = { top: 0, bottom: 0, left: 0, right: 0 };

function checkWindow(op: string, t: Tensor, name: string, win: SpatialWindow): void {
  const [B, , H, W] = t.shape as [number, number, number, number];
  const ok = [win.image, win.y, win.x].every((v) => Number.isInteger(v) && v >= 0) &&
    [win.images, win.h, win.w].every((v) => Number.isInteger(v) && v >= 1) &&
    win.image + win.images <= B && win.y + win.h <= H && win.x + win.w <= W;
  if (!ok) throw new Error(`${op}: window ${JSON.stringify(win)} lies outside ${name} ${formatShape(t.shape)}`);
}

function dispatch(op: string, src: Tensor, from: SpatialWindow, dst: Tensor, at: { image: number; y: number; x: number }, ramps: Ramps, accumulate: boolean): void {
  const dtype = commonDtype(op, src, dst);
  if (src.shape.length !== 4 || dst.shape.length !== 4 || src.shape[1] !== dst.shape[1]) {
    throw new Error(`${op}: src ${formatShape(src.shape)} and dst ${formatShape(dst.shape)} must be (B, C, H, W) with the same C`);
  }
  checkWindow(op, src, 'src', from);
  checkWindow(op, dst, 'dst', { ...from, ...at });
  const rampsOk = Object.values(ramps).every((r) => Number.isInteger(r) && r >= 0) &&
    ramps.top + ramps.bottom <= from.h && ramps.left + ramps.right <= from.w;
  if (!rampsOk) throw new Error(`${op}: ramps ${JSON.stringify(ramps)} do not fit a ${from.h}×${from.w} window`);
  const bindings = [bindWhole(op, src), bindWhole(op, dst)];
  const C = src.shape[1]!;
  const n = from.images * C * from.h * from.w;
  src.gpu.dispatch({
    kernel,
    defines: { T: dtype, ACCUMULATE: accumulate },
    uniforms: {
      n, C, h: from.h, w: from.w,
      srcH: src.shape[2]!, srcW: src.shape[3]!, srcB0: from.image, srcY: from.y, srcX: from.x,
      dstH: dst.shape[2]!, dstW: dst.shape[3]!, dstB0: at.image, dstY: at.y, dstX: at.x,
      rampTop: ramps.top, rampBottom: ramps.bottom, rampLeft: ramps.left, rampRight: ramps.right,
    },
    bindings,
    workgroups: grid(n),
  });
}

/** x (B, C, H, W) → the window (images, C, h, w), copied. */
export function cropSpatial(x: Tensor, win: SpatialWindow): Tensor {
  if (x.shape.length !== 4) throw new Error(`cropSpatial: expected (B, C, H, W), got ${formatShape(x.shape)}`);
  const out = Tensor.empty(x.gpu, [win.images, x.shape[1]!, win.h, win.w], x.dtype, 'cropSpatial');
  dispatch('cropSpatial', x, win, out, { image: 0, y: 0, x: 0 }, NO_RAMPS, false);
  return out;
}

/**
 * In place (unlike the other ops): adds `tile` (n, C, h, w), weighted by `ramps` (none by
 * default), into `dst` (B, C, H, W) at images [image, image + n) and the h×w window at (y, x).
 */
export function blendInto(dst: Tensor, tile: Tensor, at: { readonly image: number; readonly y: number; readonly x: number }, ramps: Ramps = NO_RAMPS): void {
  if (tile.shape.length !== 4) throw new Error(`blendInto: tile must be (n, C, h, w), got ${formatShape(tile.shape)}`);
  const [images, , h, w] = tile.shape as [number, number, number, number];
  dispatch('blendInto', tile, { image: 0, images, y: 0, x: 0, h, w }, dst, at, ramps, true);
}
