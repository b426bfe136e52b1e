// The runtime's own contracts: pipelines cached by specialization (never by shape), pooled
// buffers reused by size class, uniforms packed and checked, WebGPU errors surfaced with the
// kernel's name, and a clear error when there is no adapter.

import { describe, expect, it } from 'vitest';
import { sizeClass } from '../../src/gpu/buffer-pool.js';
import { defineKernel, PipelineCache, specializationKey } from '../../src/gpu/pipeline-cache.js';
import { foldWorkgroups, NoAdapterError, WebGpuRuntime } from '../../src/gpu/runtime.js';
import { uniforms } from '../../src/gpu/uniforms.js';
import { add } from '../../src/ops/binary.js';
import { Tensor } from '../../src/tensor.js';
import { randn, rng, testGpu } from '../helpers/gpu.js';

describe('GPU runtime', () => {
  it('reports a missing adapter in one line that says how to fix it', async () => {
    const error = await WebGpuRuntime.open(undefined).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoAdapterError);
    expect((error as Error).message).toMatch(/No WebGPU adapter found.*lavapipe/);
    expect((error as Error).message).not.toContain('\n');
  });

  it('compiles a pipeline once per specialization, whatever the shapes', async () => {
    const gpu = await testGpu();
    if (!(gpu instanceof WebGpuRuntime)) throw new Error('testGpu() is not the WebGPU runtime');
    const random = rng(7);
    const before = gpu.pipelines.size;
    for (const n of [5, 77, 1000]) {
      const a = Tensor.upload(gpu, randn(random, n), 'f32', [n], 'f32');
      const b = Tensor.upload(gpu, randn(random, n), 'f32', [n], 'f32');
      const sum = add(a, b);
      await gpu.sync();
      for (const t of [a, b, sum]) t.release();
    }
    // n = 5 and 77 take the scalar path, n = 1000 the vec4 path: at most two new pipelines.
    expect(gpu.pipelines.size - before).toBeLessThanOrEqual(2);
    const kernel = defineKernel({ name: 'k', source: '', layout: uniforms(['n', 'u32']) });
    expect(specializationKey(kernel, { T: 'f16', TILE: 64 })).toBe(specializationKey(kernel, { TILE: 64, T: 'f16' }));
  });

  it('compiles a set of specializations asynchronously, in parallel; get() then creates nothing', async () => {
    const gpu = await testGpu();
    if (!(gpu instanceof WebGpuRuntime)) throw new Error('testGpu() is not the WebGPU runtime');
    const calls = { sync: 0, async: 0 };
    const device = new Proxy(gpu.device, {
      get: (d, key) => {
        const value = Reflect.get(d, key) as unknown;
        if (typeof value !== 'function') return value;
        if (key === 'createComputePipeline') calls.sync++;
        if (key === 'createComputePipelineAsync') calls.async++;
        return (value as (...args: unknown[]) => unknown).bind(d);
      },
    });
    const cache = new PipelineCache(device);
    const kernel = defineKernel({ name: 'warm_kernel', source: '@compute @workgroup_size(WG) fn main() {}', layout: uniforms(['n', 'u32']) });
    const set = [{ kernel, defines: { WG: 1 } }, { kernel, defines: { WG: 64 } }, { kernel, defines: { WG: 64 } }];
    const progress: number[] = [];
    expect(await cache.compile(set, (done) => progress.push(done))).toBe(2);
    expect(calls).toEqual({ sync: 0, async: 2 });
    expect(progress).toEqual([1, 2]);
    expect(cache.get(kernel, { WG: 64 }).label).toBe('warm_kernel(WG=64)');
    cache.get(kernel, { WG: 1 });
    expect(await cache.compile(set)).toBe(0); // all there: nothing to compile
    expect(calls).toEqual({ sync: 0, async: 2 });
    expect(cache.createdSync).toBe(0);
    // A kernel that does not compile rejects, named by its specialization as get()'s errors are.
    const broken = defineKernel({ name: 'broken_async', source: '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }', layout: uniforms(['n', 'u32']) });
    await expect(cache.compile([{ kernel: broken, defines: { T: 'f32' } }])).rejects.toThrow(/broken_async\(T=f32\)/);
    await gpu.sync().catch(() => {}); // the shader module's own validation error, reported once
  });

  it('reuses pooled buffers by size class and counts its peak', async () => {
    const gpu = await testGpu();
    expect(sizeClass(1)).toBe(256);
    for (const bytes of [257, 1000, 4097, 123_457, 10_000_000]) {
      expect(sizeClass(bytes)).toBeGreaterThanOrEqual(bytes);
      expect(sizeClass(bytes)).toBeLessThan(bytes * 1.26); // four classes per octave: ≤ 2^(1/4) slack
    }
    const a = Tensor.empty(gpu, [1000], 'f32');
    const buffer = a.buffer;
    a.release();
    const b = Tensor.empty(gpu, [990], 'f32'); // same class
    expect(b.buffer).toBe(buffer);
    expect(gpu.pool.stats.peakBytes).toBeGreaterThanOrEqual(sizeClass(4000));
    b.release();
    expect(() => b.buffer).toThrow(/used after release/);
  });

  it('packs uniforms from one layout and rejects bad values by name', () => {
    const layout = uniforms(['n', 'u32'], ['eps', 'f32'], ['offset', 'i32']);
    expect(layout.byteSize).toBe(16);
    expect(layout.wgsl).toContain('eps: f32');
    const view = new DataView(new ArrayBuffer(16));
    layout.pack({ n: 3, eps: 1e-5, offset: -2 }, view, 0);
    expect([view.getUint32(0, true), view.getFloat32(4, true), view.getInt32(8, true)]).toEqual([3, Math.fround(1e-5), -2]);
    expect(() => layout.pack({ n: -1, eps: 0, offset: 0 }, view, 0)).toThrow(/uniform n: -1 is not a u32/);
    expect(() => layout.pack({ n: 1, eps: NaN, offset: 0 }, view, 0)).toThrow(/uniform eps/);
  });

  it('surfaces a WebGPU validation error as an exception naming the kernel', async () => {
    const gpu = await testGpu();
    const source = '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }';
    const broken = defineKernel({ name: 'broken_kernel', source, layout: uniforms(['n', 'u32']) });
    gpu.dispatch({ kernel: broken, defines: {}, uniforms: { n: 1 }, bindings: [], workgroups: [1] });
    await expect(gpu.sync()).rejects.toThrow(/broken_kernel/);
    await expect(gpu.sync()).resolves.toBeUndefined(); // reported once; the device goes on
  });

  it('times each kernel with timestamp queries when profiling', async (ctx) => {
    // One device per test process: Dawn can crash at exit in a process that opened several.
    const gpu = await testGpu();
    try {
      if (!gpu.setProfiling(true) || !gpu.profiler) return ctx.skip(); // adapter without timestamp-query
      const a = Tensor.upload(gpu, randn(rng(3), 4096), 'f32', [4096], 'f32');
      for (let i = 0; i < 3; i++) add(a, a).release();
      await gpu.sync();
      const report = await gpu.profiler.report();
      const entry = report.find((r) => r.kernel.startsWith('binary'));
      expect(entry?.calls).toBe(3);
      expect(entry!.totalMs).toBeGreaterThan(0);
      // Not rounded to Dawn's 65.5 µs (2¹⁶ ns) steps, which openNodeGpu turns off: a sum of
      // rounded times is a multiple of 2¹⁶ ns, an unrounded one with odds of 1 in 65536.
      expect(Math.round(entry!.totalMs * 1e6) % 65536).not.toBe(0);
    } finally {
      gpu.setProfiling(false);
    }
  });

  it('folds large grids under the per-dimension limit', () => {
    expect(foldWorkgroups(10)).toEqual([10, 1]);
    for (const count of [65536, 131_073, 16_777_216]) {
      const [x, y] = foldWorkgroups(count);
      expect(x).toBeLessThanOrEqual(65535);
      expect(x * y).toBeGreaterThanOrEqual(count);
    }
  });
});
