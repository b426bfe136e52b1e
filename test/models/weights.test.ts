// WeightRegistry.load: every mismatch in one error before any upload, values uploaded in the
// compute dtype, and uploads paced so staging copies never pile up.

import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { SyntheticSource } from '../../src/io/synthetic.js';
import { SyntheticGpuSource } from '../../src/io/synthetic-gpu.js';
import type { HostTensor, TensorEntry, TensorSource } from '../../src/io/tensor-source.js';
import { WeightRegistry, WeightScope } from '../../src/models/weights.js';
import { axpby } from '../../src/ops/binary.js';
import { concat } from '../../src/ops/concat.js';
import type { Tensor } from '../../src/tensor.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { randn, rng, roundToF16, testGpu } from '../helpers/gpu.js';
import { readFileSync } from 'node:fs';

function memorySource(tensors: Record<string, Float32Array>, shapes: Record<string, number[]>): TensorSource & { reads: string[] } {
  const reads: string[] = [];
  const entries = new Map<string, TensorEntry>(Object.keys(tensors).map((name) => [name, { name, format: 'f32', shape: shapes[name]! }]));
  return {
    description: 'memory.safetensors',
    entries,
    reads,
    read: async (name): Promise<HostTensor> => {
      reads.push(name);
      return { format: 'f32', data: tensors[name]! };
    },
  };
}

describe('WeightRegistry', () => {
  it('reports every missing, mis-shaped and unexpected tensor in one error before reading any', async () => {
    const gpu = await testGpu();
    const registry = new WeightRegistry('unet');
    const w = new WeightScope(registry).at('conv_in');
    w.get('weight', [4, 3]);
    w.get('bias', [4]);
    registry.tolerated.add('position_ids');
    const source = memorySource(
      { 'conv_in.weight': new Float32Array(12), extra: new Float32Array(1), position_ids: new Float32Array(1) },
      { 'conv_in.weight': [3, 4], extra: [1], position_ids: [1] },
    );
    const error = await registry.load(gpu, source, 'f32').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    const message = (error as Error).message;
    expect(message).toContain('unet weights in memory.safetensors do not match the model');
    expect(message).toContain('1 missing (conv_in.bias (4))');
    expect(message).toContain('1 wrong shape (conv_in.weight is (3, 4), expected (4, 3))');
    expect(message).toContain('1 unexpected (extra)');
    expect(message).not.toContain('position_ids');
    expect(source.reads).toEqual([]);
  });

  it('uploads in the compute dtype, waiting for the GPU every paceBytes', async () => {
    const gpu = await testGpu();
    const random = rng(11);
    const names = ['a', 'b', 'c', 'd'];
    const data = Object.fromEntries(names.map((n) => [n, randn(random, 301)]));
    const registry = new WeightRegistry('test');
    const scope = new WeightScope(registry);
    for (const n of names) scope.get(n, [301]);
    const source = memorySource(data, Object.fromEntries(names.map((n) => [n, [301]])));
    const syncs: number[] = [];
    const sync = gpu.sync.bind(gpu);
    gpu.sync = async () => {
      syncs.push(source.reads.length);
      return sync();
    };
    try {
      // 1204 bytes a tensor, pace 2000: a wait after every second read.
      await registry.load(gpu, source, gpu.f16 ? 'f16' : 'f32', { paceBytes: 2000 });
    } finally {
      gpu.sync = sync;
    }
    expect(syncs).toEqual([2]);
    const back = await registry.weights.get('c')!.tensor.read();
    // exact: an upload only rounds to the storage dtype
    expect(back).toEqual(gpu.f16 ? roundToF16(data.c!) : data.c);
    registry.release();
    await gpu.releaseIdleMemory();
    expect(gpu.pool.stats.pooledBytes).toBe(0);
  });

  it('has a source with create() make the tensors on the GPU: the same bits as read + upload, no read', async () => {
    const gpu = await testGpu();
    const manifest: unknown = JSON.parse(readFileSync(`${FIXTURES}sdxl-turbo-layout/weights-manifest.json`, 'utf8'));
    // A few VAE tensors of every kind there is (weight, norm weight, bias), in both dtypes.
    const names = ['post_quant_conv.weight', 'post_quant_conv.bias', 'decoder.conv_norm_out.weight', 'decoder.conv_norm_out.bias', 'decoder.conv_in.weight'];
    for (const dtype of gpu.f16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
      const loaded: Array<Map<string, Float32Array>> = [];
      for (const source of [SyntheticSource.fromManifest(manifest, 'vae'), SyntheticGpuSource.fromManifest(manifest, 'vae')]) {
        const registry = new WeightRegistry('vae');
        const scope = new WeightScope(registry);
        for (const n of names) scope.get(n, source.entries.get(n)!.shape);
        for (const n of source.entries.keys()) if (!names.includes(n)) registry.tolerated.add(n);
        let reads = 0;
        const read = source.read.bind(source);
        source.read = (name) => (reads++, read(name));
        const progress: number[] = [];
        await registry.load(gpu, source, dtype, { onProgress: (done) => progress.push(done) });
        expect(progress).toEqual([1, 2, 3, 4, 5]);
        expect(reads, source.description).toBe(source instanceof SyntheticGpuSource ? 0 : names.length);
        loaded.push(new Map(await Promise.all(names.map(async (n) => [n, await registry.weights.get(n)!.tensor.read()] as const))));
        registry.release();
      }
      // Bit for bit (Object.is: signed zeros count).
      for (const n of names) {
        const [cpu, gpuMade] = [loaded[0]!.get(n)!, loaded[1]!.get(n)!];
        expect(new Uint32Array(gpuMade.buffer), `${dtype} ${n}`).toEqual(new Uint32Array(cpu.buffer));
      }
    }
  });

  it('builds a derived weight once its parts are in, releases the parts, and rebuilds it when one part reloads (its siblings with it)', async () => {
    const gpu = await testGpu();
    const random = rng(5);
    const data = { a: randn(random, 6), b: randn(random, 4), c: randn(random, 3) };
    const source = memorySource(data, { a: [3, 2], b: [2, 2], c: [3] });
    const registry = new WeightRegistry('test');
    const scope = new WeightScope(registry);
    const [a, b, c] = [scope.get('a', [3, 2]), scope.get('b', [2, 2]), scope.get('c', [3])];
    const builds: string[] = [];
    const [ab] = registry.derive([['a|b', [5, 2]]], [a, b], (parts) => (builds.push(`${parts.length}`), [concat(parts, 0, { exact: true })]));
    expect(() => registry.derive([['x', [3]]], [a], (p) => [...p])).toThrow(/test: a is part of two derived weights/);
    expect(registry.resident()).toEqual([c, ab]);
    await registry.load(gpu, source, 'f32');
    expect(builds).toEqual(['2']);
    expect(await ab!.tensor.read()).toEqual(Float32Array.from([...data.a, ...data.b]));
    expect(() => a.tensor).toThrow(/weight a used before it was loaded/);
    expect(() => b.tensor).toThrow(/weight b used before it was loaded/);
    // A merge on a alone (a LoRA): b is read again and the concatenation rebuilt with the merged a.
    source.reads.length = 0;
    const merges = new Map([['a', async (w: Tensor) => axpby(2, w)]]);
    await registry.reload(gpu, source, 'f32', ['a'], { merges });
    expect(source.reads.sort()).toEqual(['a', 'b']);
    expect(builds).toEqual(['2', '2']);
    expect(await ab!.tensor.read()).toEqual(Float32Array.from([...data.a.map((v) => 2 * v), ...data.b]));
    registry.release();
    expect(() => ab!.tensor).toThrow(/used before it was loaded/);
    await gpu.releaseIdleMemory();
    expect(gpu.pool.stats.pooledBytes).toBe(0);
  });
});
