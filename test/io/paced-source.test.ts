import { describe, expect, it } from 'vitest';
import { PacedSource } from '../../src/io/paced-source.js';
import type { HostTensor, TensorEntry, TensorSource } from '../../src/io/tensor-source.js';
import { rng } from '../helpers/gpu.js';

/** f16 tensors of the given element counts, named t0, t1, …; logs reads and closes. */
function memorySource(sizes: number[], log: string[]): TensorSource {
  const random = rng(7);
  const data = new Map(sizes.map((n, i) => [`t${i}`, Uint16Array.from({ length: n }, () => Math.floor(random() * 65536))]));
  const entries = new Map<string, TensorEntry>([...data].map(([name, d]) => [name, { name, format: 'f16', shape: [d.length] }]));
  return {
    description: 'memory',
    entries,
    read: async (name): Promise<HostTensor> => {
      log.push(`read ${name}`);
      return { format: 'f16', data: data.get(name)! };
    },
    close: async () => {
      log.push('close');
    },
  };
}

describe('PacedSource', () => {
  it('waits for the GPU before the read that follows every `everyBytes` read, and passes everything through', async () => {
    const log: string[] = [];
    // 2-byte elements: 300, 500, 100, 700, 50, 1000 bytes against a 600-byte pace.
    const sizes = [150, 250, 50, 350, 25, 500];
    const inner = memorySource(sizes, log);
    const paced = new PacedSource(inner, { sync: async () => void log.push('sync') }, 600);
    expect(paced.description).toBe('memory');
    expect(paced.entries).toBe(inner.entries);
    for (let i = 0; i < sizes.length; i++) {
      const got = await paced.read(`t${i}`);
      expect(got.data).toEqual((await inner.read(`t${i}`)).data);
      log.pop(); // the comparison's own read
    }
    await paced.close();
    // Pending bytes before each read: 0, 300, 800 → sync, 100, 800 → sync, 50.
    expect(log).toEqual(['read t0', 'read t1', 'sync', 'read t2', 'read t3', 'sync', 'read t4', 'read t5', 'close']);
  });
});
