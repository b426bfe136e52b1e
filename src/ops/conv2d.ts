// 2-D convolution as an implicit GEMM (kernels/conv2d.wgsl); tensors over the binding limit
// are split into windows of images, then of output and input channels.

import source from '../../kernels/conv2d.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { foldWorkgroups, type Gpu } from '../gpu/runtime.js';
import { tunableOp } from '../gpu/tuning.js';
import { uniforms } from '../gpu/uniforms.js';
import { type DType, formatShape, Tensor } from '../tensor.js';
import { type Q8Tensor, quantize } from './quantize.js';
import { synthetic } from './synthetic.js';
import { bindingLimit, bindWhole, bindWindow, largestFitting, windowFits } from './windows.js';

const kernel = defineKernel({
  name: 'conv2d',
  source,
  layout: uniforms(
    ['H', 'u32'], ['W', 'u32'], ['outW', 'u32'], ['P', 'u32'], ['C', 'u32'], ['kh', 'u32'], ['kw', 'u32'],
    ['stride', 'u32'], ['padTop', 'u32'], ['padLeft', 'u32'], ['nOut', 'u32'], ['nTiles', 'u32'],
    ['xBase', 'u32'], ['xImg', 'u32'], ['wBase', 'u32'], ['wRow', 'u32'], ['biasBase', 'u32'],
    ['resBase', 'u32'], ['outBase', 'u32'], ['outImg', 'u32'], ['q8Scales', 'u32'], ['biasImg', 'u32'],
  ),
});
const OP = tunableOp('conv2d', [kernel]);

/** A workgroup tile: tm output pixels × tn output channels, rm × rn per thread, tk input
 *  channels per step; f16Tiles stages f16 inputs as f16 (f16 storage and float weights only).
 *  direct: no staging (kernels/conv2d.wgsl DIRECT): one row of threads, each all tn (= rn)
 *  channels of its rm pixels, weights read at addresses uniform across the workgroup (with
 *  subgroups, each loaded by one of 4 lanes and shared), tn a multiple of 4. */
export interface Conv2dTile {
  readonly tm: number;
  readonly tn: number;
  readonly rm: number;
  readonly rn: number;
  readonly tk: number;
  readonly f16Tiles: boolean;
  readonly direct: boolean;
}

export const CONV2D_TILES = {
  '64x64': { tm: 64, tn: 64, rm: 4, rn: 4, tk: 16, f16Tiles: false, direct: false }, // 256 threads
  '128x64': { tm: 128, tn: 64, rm: 8, rn: 4, tk: 16, f16Tiles: false, direct: false }, // 256 threads, twice the work each
  '128x128': { tm: 128, tn: 128, rm: 8, rn: 8, tk: 16, f16Tiles: false, direct: false }, // 256 threads, 4× the work each
  '128x64h': { tm: 128, tn: 64, rm: 8, rn: 4, tk: 16, f16Tiles: true, direct: false }, // half the shared memory
  '32x32': { tm: 32, tn: 32, rm: 2, rn: 2, tk: 16, f16Tiles: false, direct: false }, // 4× the workgroups of 64x64 (16×16 latents)
  '64x8': { tm: 64, tn: 8, rm: 4, rn: 1, tk: 16, f16Tiles: false, direct: false }, // 128 threads: few output channels (conv_out's 4)
  // 32 threads each, for SIMD CPUs (llvmpipe), where a uniform load is one load and a shared one a gather.
  'direct8x8': { tm: 256, tn: 8, rm: 8, rn: 8, tk: 1, f16Tiles: false, direct: true },
  'direct16x4': { tm: 128, tn: 16, rm: 4, rn: 16, tk: 1, f16Tiles: false, direct: true },
  'direct4x8': { tm: 256, tn: 4, rm: 8, rn: 4, tk: 1, f16Tiles: false, direct: true }, // few output channels
} as const satisfies Record<string, Conv2dTile>;
export type Conv2dVariant = keyof typeof CONV2D_TILES;
export const CONV2D_VARIANTS = Object.keys(CONV2D_TILES) as Conv2dVariant[];
for (const v of CONV2D_VARIANTS) {
  // kernels/conv2d.wgsl: whole thread grids, each thread one channel of w's rows and one pixel
  // of col's columns per load pass, and whole passes per step.
  const { tm, tn, rm, rn, tk, direct } = CONV2D_TILES[v];
  const threads = (tm / rm) * (tn / rn);
  const even = direct ? tn === rn && tk === 1 && rn % 4 === 0 : !(threads % tk || threads % tm || tn % (threads / tk) || tk % (threads / tm));
  if (tm % rm || tn % rn || !even) throw new Error(`conv2d: tile ${v} does not divide its loads evenly`);
}

export interface Conv2dOptions {
  /** Same stride on both axes (default 1). */
  readonly stride?: number;
  /** Zero padding on every side, or [top, bottom, left, right] (default 0). */
  readonly padding?: number | readonly [number, number, number, number];
  /** (B, O, Ho, Wo), added in the epilogue. */
  readonly residual?: Tensor;
  /** Force a tile (tests and benchmarks); default: the adapter's tuned choice, else the heuristic. */
  readonly variant?: Conv2dVariant;
}

/**
 * 2-D convolution: x (B, C, H, W), weight (O, C, kh, kw), bias (O), (B, O) (one per image: a
 * resnet's conv1 bias plus its time embedding, added in the epilogue) or null → (B, O, Ho, Wo);
 * an 8-bit weight (Q8Tensor) is dequantized inside the kernel.
 * Tensors over the binding limit are split into dispatches over images, then (for one image)
 * over output-channel chunks and input-channel chunks, the latter accumulated in the output.
 */
export function conv2d(x: Tensor, weight: Tensor | Q8Tensor, bias?: Tensor | null, options: Conv2dOptions = {}): Tensor {
  const gpu = x.gpu;
  const stride = options.stride ?? 1;
  const pad = options.padding ?? 0;
  const [padTop, padBottom, padLeft, padRight] = typeof pad === 'number' ? [pad, pad, pad, pad] : pad;
  const residual = options.residual;
  const shapes = `x ${formatShape(x.shape)}, weight ${formatShape(weight.shape)}`;
  if (x.shape.length !== 4 || weight.shape.length !== 4) throw new Error(`conv2d: expects x (B, C, H, W) and weight (O, C, kh, kw), got ${shapes}`);
  const [B, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cw, kh, kw] = weight.shape as [number, number, number, number];
  if (Cw !== C) throw new Error(`conv2d: weight expects ${Cw} input channels, x has ${C} (${shapes})`);
  if (!Number.isInteger(stride) || stride < 1) throw new Error(`conv2d: stride ${stride} must be a positive integer`);
  if (![padTop, padBottom, padLeft, padRight].every((p) => Number.isInteger(p) && p >= 0)) throw new Error(`conv2d: padding ${JSON.stringify(pad)} must be non-negative integers`);
  const outH = Math.floor((H + padTop + padBottom - kh) / stride) + 1;
  const outW = Math.floor((W + padLeft + padRight - kw) / stride) + 1;
  if (C < 1 || O < 1 || kh < 1 || kw < 1 || outH < 1 || outW < 1) throw new Error(`conv2d: empty output for ${shapes}, stride ${stride}, padding ${JSON.stringify(pad)}`);
  const outShape = [B, O, outH, outW];
  const P = outH * outW;
  const q8 = weight instanceof Tensor ? null : weight;
  if (!q8 && (weight as Tensor).dtype !== x.dtype) throw new Error(`conv2d: weight is ${(weight as Tensor).dtype}, x is ${x.dtype}`);
  const perImage = bias?.shape.length === 2;
  if (bias && (bias.dtype !== x.dtype || formatShape(bias.shape) !== formatShape(perImage ? [B, O] : [O]))) {
    throw new Error(`conv2d: bias ${formatShape(bias.shape)} ${bias.dtype} must be (${O}) or (${B}, ${O}) ${x.dtype}`);
  }
  if (residual && (residual.dtype !== x.dtype || formatShape(residual.shape) !== formatShape(outShape))) {
    throw new Error(`conv2d: residual ${formatShape(residual.shape)} ${residual.dtype} must be ${formatShape(outShape)} ${x.dtype}`);
  }
  const biasKind = !bias ? 'none' : perImage ? 'image' : 'channel';
  const key = `${x.dtype} ${B}×${C}×${H}×${W}→${O} ${kh}×${kw} s${stride} p${padTop},${padBottom},${padLeft},${padRight} bias:${biasKind}${residual ? ' +res' : ''}${q8 ? ' q8' : ''}`;
  const valid = CONV2D_VARIANTS.filter((v) => tileFits(CONV2D_TILES[v], gpu, x.dtype, q8 !== null));
  // Where there are few output channels only tiles of ≤ 8; elsewhere all but the two narrow ones.
  const candidates = valid.filter((v) => (O <= 8 ? CONV2D_TILES[v].tn <= 8 : v !== '64x8' && v !== 'direct4x8'));
  const variant =
    options.variant ??
    gpu.tuning.choose(OP, key, candidates, heuristic(O, gpu.tuning.cpu, gpu.subgroups, candidates), () => ({
      label: `conv2d ${key}`,
      prepare: (g) => {
        const xs = synthetic(g, 'tune.conv2d.x', x.shape, x.dtype);
        const wf = synthetic(g, 'tune.conv2d.weight', weight.shape, x.dtype);
        const ws = q8 ? quantize(wf, 'tune.conv2d.weight') : wf;
        if (q8) wf.release();
        const bs = bias ? synthetic(g, 'tune.conv2d.bias', bias.shape, x.dtype) : null;
        const rs = residual ? synthetic(g, 'tune.conv2d.residual', residual.shape, x.dtype) : null;
        return {
          run: (v) => conv2d(xs, ws, bs, { stride, padding: pad, ...(rs ? { residual: rs } : {}), variant: v }).release(),
          dispose: () => {
            for (const t of [xs, ws, bs, rs]) t?.release();
          },
        };
      },
    }));
  const tile: Conv2dTile = CONV2D_TILES[variant];
  if (!valid.includes(variant)) throw new Error(`conv2d: tile ${variant} does not apply to ${key} (valid: ${valid.join(', ')})`);
  const TN = tile.tn;
  // Weights always fit: SDXL's largest is 59 MB in f16.
  const whole = q8 ? bindWhole('conv2d weight', q8.words) : bindWhole('conv2d weight', weight as Tensor);
  const HW = H * W;
  const khw = kh * kw;
  const plan = planWindows(x, B, C, HW, O, P, TN);
  const out = Tensor.empty(gpu, outShape, x.dtype, 'conv2d');
  const tileDefines = { S: tile.f16Tiles ? 'f16' : 'f32', TM: tile.tm, TN, RM: tile.rm, RN: tile.rn, TK: tile.tk, DIRECT: tile.direct, SUBGROUPS: tile.direct && gpu.subgroups };
  for (const { b, nb, o0, nOut, c0, nC } of plan) {
    const first = c0 === 0; // bias and residual join the first input-channel chunk
    const nTiles = Math.ceil(nOut / TN);
    const xs = bindWindow('conv2d x', x, (b * C + c0) * HW, ((nb - 1) * C + nC) * HW);
    const outStart = (b * O + o0) * P;
    const outCount = ((nb - 1) * O + nOut) * P;
    const os = bindWindow('conv2d out', out, outStart, outCount);
    const rs = residual && first ? bindWindow('conv2d residual', residual, outStart, outCount) : null;
    // A Q8 weight is read at binding 6; the x window stands in for the float one.
    const [w, q8Binding] = q8 ? [xs.binding, whole] : [whole, whole];
    gpu.dispatch({
      kernel,
      defines: { T: x.dtype, ...tileDefines, HAS_BIAS: !!bias && first, RESIDUAL: rs !== null, ACCUMULATE: !first, Q8: q8 !== null },
      uniforms: {
        H, W, outW, P, C: nC, kh, kw, stride, padTop, padLeft, nOut, nTiles,
        xBase: xs.base, xImg: C * HW, wBase: (o0 * C + c0) * khw, wRow: C * khw, biasBase: (perImage ? b * O : 0) + o0,
        resBase: rs?.base ?? 0, outBase: os.base, outImg: O * P, q8Scales: q8?.scaleBase ?? 0, biasImg: perImage ? O : 0,
      },
      // Unused bias/residual slots get the weight: read-only aliases are valid.
      bindings: [xs.binding, w, bias ? bindWhole('conv2d bias', bias) : w, rs?.binding ?? w, os.binding, q8Binding],
      workgroups: [...foldWorkgroups(Math.ceil(P / tile.tm)), nTiles * nb],
    });
  }
  return out;
}

/** On a GPU, today's staged tiles; on a CPU adapter the DIRECT ones, which llvmpipe ran 2–6×
 *  faster on every UNet conv (BENCHMARKS.md, "Heuristic vs tuned", 2026-12-07): 16 channels
 *  per invocation where subgroups share the weights (tuning took `direct16x4` for 24 of the 26
 *  UNet convs with over 8 output channels: "Shared weights", 2026-12-07), else 8. Few output
 *  channels take the narrow tiles, which leave fewer columns idle. */
function heuristic(O: number, cpu: boolean, subgroups: boolean, candidates: readonly Conv2dVariant[]): Conv2dVariant {
  const few = O <= CONV2D_TILES['64x8'].tn;
  const direct = few ? 'direct4x8' : subgroups ? 'direct16x4' : 'direct8x8';
  if (cpu && candidates.includes(direct)) return direct;
  return few ? '64x8' : '64x64';
}

/** Whether `t` runs for this call on this device: its loads divide evenly, its workgroup and
 *  shared memory fit the limits, and f16 staging holds the values exactly. */
function tileFits(t: Conv2dTile, gpu: Gpu, dtype: DType, q8: boolean): boolean {
  const threads = (t.tm / t.rm) * (t.tn / t.rn);
  const staged = (t.tn * t.tk + t.tk * t.tm) * (t.f16Tiles ? 2 : 4);
  return (
    threads <= gpu.limits.maxComputeInvocationsPerWorkgroup &&
    t.tm / t.rm <= gpu.limits.maxComputeWorkgroupSizeX &&
    t.tn / t.rn <= gpu.limits.maxComputeWorkgroupSizeY &&
    staged <= gpu.limits.maxComputeWorkgroupStorageSize &&
    (!t.f16Tiles || (dtype === 'f16' && !q8))
  );
}

/** One dispatch: images [b, b + nb), output channels [o0, o0 + nOut), input channels [c0, c0 + nC). */
interface Window {
  readonly b: number;
  readonly nb: number;
  readonly o0: number;
  readonly nOut: number;
  readonly c0: number;
  readonly nC: number;
}

/** Splits the work so every binding fits: whole images where they fit, else channel chunks of one
 *  image (rows of an NCHW image are not contiguous across channels; channel ranges are). The
 *  residual has the output's layout and dtype, so the output's windows fit it too. */
function planWindows(x: Tensor, B: number, C: number, HW: number, O: number, P: number, TN: number): Window[] {
  const gpu = x.gpu;
  const fits = (start: number, count: number): boolean => windowFits(gpu, x.dtype, start, count);
  const maxImages = Math.floor(gpu.limits.maxComputeWorkgroupsPerDimension / Math.ceil(O / TN));
  const plan: Window[] = [];
  for (let b = 0; b < B; ) {
    const nb = largestFitting(Math.min(B - b, maxImages), (n) => fits(b * C * HW, n * C * HW) && fits(b * O * P, n * O * P));
    if (nb > 0) {
      plan.push({ b, nb, o0: 0, nOut: O, c0: 0, nC: C });
      b += nb;
      continue;
    }
    for (let o0 = 0; o0 < O; ) {
      let nOut = largestFitting(O - o0, (n) => fits((b * O + o0) * P, n * P));
      if (nOut < O - o0 && nOut >= TN) nOut -= nOut % TN; // whole tiles
      for (let c0 = 0; c0 < C; ) {
        const nC = largestFitting(C - c0, (n) => fits((b * C + c0) * HW, n * HW));
        if (nOut === 0 || nC === 0) {
          throw new Error(
            `conv2d: x ${formatShape(x.shape)} (${x.dtype}) → ${O} channels of ${P} pixels: one channel plane exceeds ` +
              `maxStorageBufferBindingSize (${bindingLimit(gpu)} bytes); tile the image`,
          );
        }
        plan.push({ b, nb: 1, o0, nOut, c0, nC });
        c0 += nC;
      }
      o0 += nOut;
    }
    b += 1;
  }
  return plan;
}
