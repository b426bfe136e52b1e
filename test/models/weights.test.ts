// WeightRegistry.load: every mismatch in one error before any upload, values uploaded in the
// compute dtype, and uploads paced so staging copies never pile up.

import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import type { HostTensor, TensorEntry, TensorSource } from '../../src/io/tensor-source.js';
import { WeightRegistry, WeightScope } from '../../src/models/weights.js';
import { randn, rng, roundToF16, testGpu } from '../helpers/gpu.js';

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
    expect(message).toContain('missing: conv_in.bias (4)');
    expect(message).toContain('wrong shape: conv_in.weight is (3, 4), expected (4, 3)');
    expect(message).toContain('unexpected: extra');
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
});
