// Nearest-neighbour upsampling of NCHW planes (kernels/upsample.wgsl), values copied bit for bit.

import source from '../../kernels/upsample.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { bytesPerElement, formatShape, Tensor } from '../tensor.js';
import { commonDtype, grid, WG } from './common.js';
import { alignedWindows, windowBinding } from './windows.js';

const kernel = defineKernel({
  name: 'upsample',
  source,
  layout: uniforms(['n', 'u32'], ['inH', 'u32'], ['inW', 'u32'], ['outH', 'u32'], ['outW', 'u32'], ['scaleY', 'f32'], ['scaleX', 'f32']),
  constants: { WG },
});

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
      kernel,
      defines: { T: dtype },
      uniforms: { n, inH: h, inW: w, outH, outW, scaleY: Math.fround(h / outH), scaleX: Math.fround(w / outW) },
      bindings: [windowBinding('upsampleNearest', x, win, inPlane), windowBinding('upsampleNearest', out, win, outPlane)],
      workgroups: grid(n),
    });
  }
  return out;
}

/** (B, C, H, W) → (B, C, 2H, 2W): every pixel repeated 2×2. */
export function upsampleNearest2x(x: Tensor): Tensor {
  const [, , h = 0, w = 0] = x.shape;
  return upsampleNearest(x, 2 * h, 2 * w);
}
