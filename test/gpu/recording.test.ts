// The recording device: ops run on it record their dispatches instead of running them, its
// buffers are shape-only but come from the real pool logic (so peaks equal the real device's),
// it plays by the limits it is given, and declared weights cost no activation bytes.

import { describe, expect, it } from 'vitest';
import { BufferTooLargeError } from '../../src/gpu/buffer-pool.js';
import { RecordingGpu } from '../../src/gpu/recording.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { declareWeights } from '../../src/models/memory-plan.js';
import { WeightRegistry } from '../../src/models/weights.js';
import { add, mul } from '../../src/ops/binary.js';
import { layerNorm } from '../../src/ops/layernorm.js';
import { Tensor } from '../../src/tensor.js';
import { testGpu } from '../helpers/gpu.js';

/** A few ops with releases in between; the pool's peak and misses from an emptied pool. */
function poolRun(gpu: Gpu): { peak: number; live: number; misses: number } {
  gpu.trimPool();
  const { liveBytes: base, misses } = gpu.pool.stats;
  gpu.pool.peakBytes = base;
  gpu.pool.peakLiveBytes = base;
  const x = Tensor.empty(gpu, [3000], 'f32');
  const y = add(x, x);
  x.release();
  const z = mul(y, y);
  const w = add(z, y); // reuses x's buffer
  for (const t of [y, z, w]) t.release();
  return { peak: gpu.pool.peakBytes - base, live: gpu.pool.peakLiveBytes - base, misses: gpu.pool.stats.misses - misses };
}

describe('RecordingGpu', () => {
  it('records dispatches (kernel, buffer ids, offsets and sizes, workgroups, uniforms) instead of running them', async () => {
    const gpu = new RecordingGpu();
    const a = Tensor.empty(gpu, [1000], 'f32');
    const b = Tensor.empty(gpu, [1000], 'f32');
    const sum = add(a, b);
    expect(gpu.dispatches.length).toBeGreaterThan(0);
    const bound = new Set(gpu.dispatches.flatMap((d) => d.bindings.map((binding) => binding.buffer)));
    for (const t of [a, b, sum]) expect(bound.has(gpu.bufferId(t.buffer))).toBe(true);
    for (const d of gpu.dispatches) {
      expect(d.kernel).not.toBe('');
      expect(d.workgroups[0] * d.workgroups[1] * d.workgroups[2]).toBeGreaterThan(0);
      expect(Object.keys(d.uniforms).length).toBeGreaterThan(0);
      for (const binding of d.bindings) expect(binding.offset + binding.size).toBeLessThanOrEqual(4 * 1024); // within a 1000-float pool buffer
    }
    expect(gpu.largestBinding).toBe(4000);
    // Nothing ran: reads are zeros, writes go nowhere.
    a.fill(1);
    expect(await sum.read()).toEqual(new Float32Array(1000));
    for (const t of [a, b, sum]) t.release();
  });

  it("grows and reuses its pool exactly as the device's", async () => {
    const real = await testGpu();
    const recording = new RecordingGpu(real.limits, real.f16);
    const measured = poolRun(real);
    await real.sync();
    expect(poolRun(recording)).toEqual(measured);
    expect(measured.misses).toBe(3); // x's buffer went to w
  });

  it('plans the reductions the device runs: SUBGROUPS follows the flag it is given', async () => {
    const real = await testGpu();
    for (const subgroups of [false, true]) {
      const gpu = new RecordingGpu(real.limits, real.f16, subgroups);
      const x = Tensor.empty(gpu, [3, 8], 'f32');
      const g = Tensor.empty(gpu, [8], 'f32');
      layerNorm(x, g, g, { eps: 1e-5 }).release();
      expect([...gpu.specializations.values()].map((s) => s.defines.SUBGROUPS)).toEqual([subgroups]);
    }
  });

  it('plays by the limits it is given: the adapter’s (read through its getters) or overrides', async () => {
    const real = await testGpu();
    const copied = new RecordingGpu(real.limits);
    expect(copied.limits.maxStorageBufferBindingSize).toBe(real.limits.maxStorageBufferBindingSize);
    expect(copied.limits.maxBufferSize).toBe(real.limits.maxBufferSize);
    // 4 KiB bindings: the op splits a 40 KB tensor into windows, as it would on such a device.
    const small = new RecordingGpu({ maxStorageBufferBindingSize: 4096 });
    const x = Tensor.empty(small, [10_000], 'f32');
    add(x, x);
    expect(small.dispatches.length).toBeGreaterThan(1);
    expect(small.largestBinding).toBeLessThanOrEqual(4096);
    // Over maxBufferSize: the pool's own error, with the size.
    const capped = new RecordingGpu({ maxBufferSize: 1 << 20 });
    expect(() => Tensor.empty(capped, [1 << 20], 'f32', 'big')).toThrow(BufferTooLargeError);
  });

  it('declares weights shape-only: exact bytes, no activation bytes', () => {
    const gpu = new RecordingGpu();
    const registry = new WeightRegistry('net');
    const w = registry.declare('w', [3, 5]);
    registry.declare('b', [5]);
    expect(declareWeights(gpu, registry, 'f16')).toBe(32 + 16); // 30 and 10 bytes, 16-byte multiples
    expect(w.tensor.shape).toEqual([3, 5]);
    expect(w.tensor.dtype).toBe('f16');
    expect(gpu.pool.stats.liveBytes).toBe(0);
    expect(gpu.pool.stats.peakBytes).toBe(0);
  });
});
