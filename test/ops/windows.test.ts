// The binding-limit planner (src/ops/windows.ts) every op splits with; the ops' own tests run
// their split paths on devices opened with a small GpuOptions.maxStorageBindingBytes.

import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/tensor.js';
import { alignedWindows, bindWhole, bindWindow, splitWindows, windowFits } from '../../src/ops/windows.js';
import { testGpu } from '../helpers/gpu.js';
import { gpuWithBindingLimit } from '../helpers/ops.js';

describe('binding windows', () => {
  it('the device option caps the limit ops read, nothing else', async () => {
    const [gpu, small] = [await testGpu(), await gpuWithBindingLimit(4096)];
    expect(small.limits.maxStorageBufferBindingSize).toBe(4096);
    expect(gpu.limits.maxStorageBufferBindingSize).toBeGreaterThan(4096);
    expect(small.limits.maxComputeWorkgroupsPerDimension).toBe(gpu.limits.maxComputeWorkgroupsPerDimension);
    expect(small.limits.minStorageBufferOffsetAlignment).toBe(gpu.limits.minStorageBufferOffsetAlignment);
  });

  it('aligned windows tile units contiguously at 256-byte aligned offsets within the limit', async () => {
    const gpu = await gpuWithBindingLimit(4096);
    for (const unitBytes of [[4], [2], [28, 14], [12, 48], [6]]) {
      const windows = alignedWindows('test', gpu, 5000, unitBytes);
      expect(windows.length).toBeGreaterThan(1);
      let next = 0;
      for (const { start, count } of windows) {
        expect(start).toBe(next);
        for (const b of unitBytes) {
          expect((start * b) % 256).toBe(0);
          expect(count * b).toBeLessThanOrEqual(4096);
        }
        next = start + count;
      }
      expect(next).toBe(5000);
    }
    expect(alignedWindows('test', gpu, 1000, [4])).toEqual([{ start: 0, count: 1000 }]);
    // 500-byte units need 64-unit alignment: no window can fit.
    expect(() => alignedWindows('test', gpu, 10, [500])).toThrow(/test: cannot split 10 units of 500 bytes/);
  });

  it('element windows bind from the aligned offset below their start and cover it within the limit', async () => {
    const gpu = await gpuWithBindingLimit(4096);
    const align = gpu.limits.minStorageBufferOffsetAlignment;
    const t = Tensor.empty(gpu, [5000], 'f32');
    // Rows of 40 elements: windows of whole rows whose bindings fit 4096 bytes.
    const windows = splitWindows(5000 / 40, (row, rows) => windowFits(gpu, 'f32', row * 40, rows * 40), () => 'too large');
    let next = 0;
    for (const w of windows) {
      expect(w.start).toBe(next);
      const { binding, base } = bindWindow('test', t, w.start * 40, w.count * 40);
      expect((binding.offset ?? 0) % align).toBe(0);
      expect((binding.offset ?? 0) / 4 + base).toBe(w.start * 40);
      expect(binding.size!).toBeLessThanOrEqual(4096);
      expect((binding.offset ?? 0) + binding.size!).toBeGreaterThanOrEqual((w.start + w.count) * 160);
      next = w.start + w.count;
    }
    expect(next).toBe(125);
    expect(() => splitWindows(3, () => false, () => 'one unit is too large')).toThrow('one unit is too large');
    // vec4 bindings round up to whole 16 bytes (the kernel's array<vec4<T>> length rounds down).
    expect(bindWindow('test', t, 1, 2, { vec4: true }).binding.size! % 16).toBe(0);
    expect(() => bindWhole('test', t)).toThrow(/test: f32 tensor \(5000\) is 20000 bytes, over this device's 4096-byte storage binding limit/);
    t.release();
  });
});
