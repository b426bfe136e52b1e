// Reference of kernels/upsample.wgsl (a copy: compared exactly).

/** aten's nearest_idx, literally: copy, the 2× shift, else ⌊i · f32(in/out)⌋ in f32, clamped. */
export function nearestIndex(i: number, size: number, outSize: number): number {
  if (outSize === size) return i;
  if (outSize === 2 * size) return i >> 1;
  const scale = Math.fround(size / outSize);
  return Math.min(Math.floor(Math.fround(i * scale)), size - 1);
}

/** x (B, C, H, W) → (B, C, outH, outW) by PyTorch's nearest rule. */
export function upsampleRef(src: ArrayLike<number>, [b, c, h, w]: readonly number[], outH: number, outW: number): Float32Array {
  const out = new Float32Array(b! * c! * outH * outW);
  for (let p = 0; p < b! * c!; p++) {
    for (let y = 0; y < outH; y++) {
      const sy = nearestIndex(y, h!, outH);
      for (let x = 0; x < outW; x++) out[(p * outH + y) * outW + x] = src[(p * h! + sy) * w! + nearestIndex(x, w!, outW)]!;
    }
  }
  return out;
}
