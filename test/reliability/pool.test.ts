// The buffer pool trims size classes unused for a while (issue 13, item 10): it ages by
// generations, keeping per size class the most buffers in use at once during the last
// IDLE_GENERATIONS generations. Runs at many sizes stay bounded; repeating a size allocates
// nothing; a trimmed buffer is destroyed, never handed out again. (Pure bookkeeping: fake buffers.)

import { describe, expect, it } from 'vitest';
import { BufferPool, IDLE_GENERATIONS, sizeClass } from '../../src/gpu/buffer-pool.js';

interface FakeBuffer {
  readonly size: number;
  destroyed: boolean;
  destroy(): void;
}

function fakePool(): { pool: BufferPool; created: FakeBuffer[] } {
  const created: FakeBuffer[] = [];
  const pool = new BufferPool((size) => {
    const b: FakeBuffer = { size, destroyed: false, destroy: () => void (b.destroyed = true) };
    created.push(b);
    return b as unknown as GPUBuffer;
  }, 2 ** 40);
  return { pool, created };
}

/** A "generation" at `scale`: activations of a few sizes proportional to it, some at once. */
function generation(pool: BufferPool, scale: number): void {
  const held = [1, 3, 2, 5].map((k) => pool.acquire(k * scale * 1024, 'activation'));
  for (const b of held.splice(1, 2)) pool.release(b);
  held.push(pool.acquire(4 * scale * 1024, 'activation'), pool.acquire(scale * 1024, 'activation'));
  for (const b of held) pool.release(b);
  pool.endGeneration();
}

describe('BufferPool aging', () => {
  it('runs at 16 sizes in turn hold no more than the last two sizes need, and free the rest', () => {
    const { pool, created } = fakePool();
    const sizes = Array.from({ length: 16 }, (_, i) => 17 + 9 * i);
    const held: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (const s of sizes) {
        generation(pool, s);
        held.push(pool.stats.pooledBytes);
      }
    }
    // What one generation at scale s leaves pooled (everything released), for the bound below.
    const alone = (s: number): number => {
      const { pool: p } = fakePool();
      generation(p, s);
      return p.stats.pooledBytes;
    };
    const bound = alone(sizes.at(-1)!) + alone(sizes.at(-2)!);
    expect(IDLE_GENERATIONS).toBe(2);
    expect(Math.max(...held)).toBeLessThanOrEqual(bound);
    expect(pool.stats.liveBytes).toBe(0);
    const alive = created.filter((b) => !b.destroyed);
    expect(alive.reduce((sum, b) => sum + b.size, 0)).toBe(pool.stats.pooledBytes);
  });

  it('repeating a size allocates nothing after its first generation, and alternating two sizes keeps both', () => {
    const { pool } = fakePool();
    generation(pool, 40);
    const misses = pool.stats.misses;
    for (let i = 0; i < 5; i++) generation(pool, 40);
    expect(pool.stats.misses).toBe(misses);
    generation(pool, 77);
    const both = pool.stats.misses;
    for (let i = 0; i < 6; i++) generation(pool, i % 2 ? 77 : 40);
    expect(pool.stats.misses).toBe(both);
  });

  it('a class unused for two generations is destroyed; buffers still in use are never touched', () => {
    const { pool, created } = fakePool();
    const kept = pool.acquire(1000, 'long-lived');
    pool.release(pool.acquire(5000, 'once'));
    pool.endGeneration(); // generation 1 used it
    pool.endGeneration(); // generation 2 did not: still within IDLE_GENERATIONS
    expect(created.find((b) => b.size === sizeClass(5000))!.destroyed).toBe(false);
    pool.endGeneration(); // two generations without it
    expect(created.find((b) => b.size === sizeClass(5000))!.destroyed).toBe(true);
    expect(created.find((b) => b.size === sizeClass(1000))!.destroyed).toBe(false);
    expect(pool.stats).toMatchObject({ liveBytes: sizeClass(1000), pooledBytes: 0 });
    pool.release(kept);
    expect(pool.acquire(5000, 'again')).not.toBe(created.find((b) => b.size === sizeClass(5000)));
  });
});
