// Data movement of the elementwise family: nearest upsampling (kernels/upsample.wgsl),
// concatenation (kernels/concat.wgsl) and batched transposition (kernels/transpose.wgsl).
// Values are copied bit for bit.

import concatSource from '../../kernels/concat.wgsl';
import transposeSource from '../../kernels/transpose.wgsl';
import upsampleSource from '../../kernels/upsample.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups } from '../gpu/runtime.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, formatShape, numel, Tensor } from '../tensor.js';
import { alignedWindows, assertBindable, windowBinding } from './aligned-windows.js';
import { commonDtype, grid256, vectorDefines } from './common.js';

const upsampleLayout = uniforms(
  ['n', 'u32'],
  ['inH', 'u32'],
  ['inW', 'u32'],
  ['outH', 'u32'],
  ['outW', 'u32'],
  ['scaleY', 'f32'],
  ['scaleX', 'f32'],
);
const upsampleKernel = defineKernel('upsample', upsampleSource, upsampleLayout);

/**
 * (B, C, H, W) → (B, C, outH, outW), nearest neighbour with PyTorch's index rule
 * (F.interpolate(size=(outH, outW), mode='nearest'): source index ⌊i · f32(in/out)⌋, clamped),
 * which diffusers' UNet uses to meet an odd-sized skip on the way up. Splits over whole planes
 * when a tensor exceeds one binding (the VAE decoder's last upsample in f32).
 */
export function upsampleNearest(x: Tensor, outH: number, outW: number): Tensor {
  const dtype = commonDtype('upsampleNearest', x);
  if (x.shape.length !== 4) throw new Error(`upsampleNearest: expected (B, C, H, W), got ${formatShape(x.shape)}`);
  if (![outH, outW].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`upsampleNearest: output size ${outH}×${outW} is not positive integers`);
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const out = Tensor.empty(x.gpu, [b, c, outH, outW], dtype, 'upsampleNearest');
  const [inPlane, outPlane] = [h * w, outH * outW];
  const bytes = bytesPerElement(dtype);
  for (const win of alignedWindows('upsampleNearest', x.gpu, b * c, [inPlane * bytes, outPlane * bytes])) {
    const n = win.count * outPlane;
    x.gpu.dispatch({
      kernel: upsampleKernel,
      defines: { T: dtype },
      layout: upsampleLayout,
      uniforms: { n, inH: h, inW: w, outH, outW, scaleY: Math.fround(h / outH), scaleX: Math.fround(w / outW) },
      bindings: [windowBinding('upsampleNearest', x, win, inPlane), windowBinding('upsampleNearest', out, win, outPlane)],
      workgroups: grid256(n),
    });
  }
  return out;
}

/** (B, C, H, W) → (B, C, 2H, 2W): every pixel repeated 2×2. */
export function upsampleNearest2x(x: Tensor): Tensor {
  const [, , h = 0, w = 0] = x.shape;
  return upsampleNearest(x, 2 * h, 2 * w);
}

const concatLayout = uniforms(['n', 'u32'], ['cols', 'u32'], ['dstCols', 'u32'], ['offset', 'u32']);
const concatKernel = defineKernel('concat', concatSource, concatLayout);

/** Joins `tensors` along `axis` (negative counts from the end); all other dims must agree. */
export function concat(tensors: readonly Tensor[], axis: number): Tensor {
  const first = tensors[0];
  if (!first) throw new Error('concat: no tensors');
  const dtype = commonDtype('concat', ...tensors);
  const rank = first.shape.length;
  const ax = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(ax) || ax < 0 || ax >= rank) throw new Error(`concat: axis ${axis} out of range for rank ${rank}`);
  const shapes = tensors.map((t) => formatShape(t.shape)).join(', ');
  for (const t of tensors) {
    if (t.shape.length !== rank || t.shape.some((d, k) => k !== ax && d !== first.shape[k])) {
      throw new Error(`concat: shapes ${shapes} differ outside axis ${axis}`);
    }
  }
  const total = tensors.reduce((s, t) => s + t.shape[ax]!, 0);
  const outer = numel(first.shape.slice(0, ax));
  const inner = numel(first.shape.slice(ax + 1));
  const out = Tensor.empty(first.gpu, first.shape.map((d, k) => (k === ax ? total : d)), dtype, 'concat');
  assertBindable('concat', out);
  let offset = 0;
  for (const t of tensors) {
    assertBindable('concat', t);
    const cols = t.shape[ax]! * inner;
    const width = cols % 4 === 0 && (total * inner) % 4 === 0 && (offset * inner) % 4 === 0 ? 4 : 1;
    t.gpu.dispatch({
      kernel: concatKernel,
      defines: vectorDefines(dtype, width),
      layout: concatLayout,
      uniforms: { n: (outer * cols) / width, cols: cols / width, dstCols: (total * inner) / width, offset: (offset * inner) / width },
      bindings: [t.binding, out.binding],
      workgroups: grid256((outer * cols) / width),
    });
    offset += t.shape[ax]!;
  }
  return out;
}

const transposeLayout = uniforms(['rows', 'u32'], ['cols', 'u32'], ['tilesX', 'u32'], ['tilesY', 'u32'], ['tiles', 'u32']);
const transposeKernel = defineKernel('transpose', transposeSource, transposeLayout);

/** (B, X, Y) → (B, Y, X). */
export function transpose12(x: Tensor): Tensor {
  const dtype = commonDtype('transpose12', x);
  if (x.shape.length !== 3) throw new Error(`transpose12: expected (B, X, Y), got ${formatShape(x.shape)}`);
  assertBindable('transpose12', x);
  const [b, rows, cols] = x.shape as [number, number, number];
  const out = Tensor.empty(x.gpu, [b, cols, rows], dtype, 'transpose12');
  const tilesX = Math.ceil(cols / 32);
  const tilesY = Math.ceil(rows / 32);
  const tiles = b * tilesX * tilesY;
  x.gpu.dispatch({
    kernel: transposeKernel,
    defines: { T: dtype },
    layout: transposeLayout,
    uniforms: { rows, cols, tilesX, tilesY, tiles },
    bindings: [x.binding, out.binding],
    workgroups: foldWorkgroups(tiles),
  });
  return out;
}
