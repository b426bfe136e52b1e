// torch CPU generator port vs raw torch.randn samples and every random draw the reference
// pipelines made (test/fixtures/tiny-sdxl-reference: randn.safetensors, e2e_*.safetensors).

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TorchGenerator } from '../../src/pipeline/rng.js';
import { readReference, ref, TINY_REF } from '../helpers/fixtures.js';
import { maxAbsDiff } from '../helpers/gpu.js';

/** Fraction of elements with identical float32 bits (so −0 ≠ +0 and NaN never matches). */
function bitwiseFraction(actual: Float32Array, expected: Float32Array): number {
  expect(actual.length).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === e[i]) same++;
  return same / a.length;
}

/** The port is exact: every value bit for bit (reported as fraction and max |Δ| on failure). */
function expectBitwise(actual: Float32Array, expected: Float32Array, what: string): void {
  const fraction = bitwiseFraction(actual, expected);
  expect({ what, fraction, maxAbsDiff: maxAbsDiff(actual, expected) }).toEqual({ what, fraction: 1, maxAbsDiff: 0 });
}

describe('mt19937', () => {
  it('gives the standard sequence (C++ std::mt19937 default seed 5489)', () => {
    const g = new TorchGenerator(5489);
    expect(g.nextUint32()).toBe(3499211612);
    for (let i = 2; i < 10000; i++) g.nextUint32();
    expect(g.nextUint32()).toBe(4123659995); // the 10000th output, required by the C++ standard
  });

  it('seeds like torch manual_seed: low 32 bits, negatives wrap, out of range is an error', () => {
    const first = (seed: number | bigint): number => new TorchGenerator(seed).nextUint32();
    expect(first(2n ** 64n - 1n)).toBe(first(-1));
    expect(first(2n ** 64n - 1n)).toBe(first(2 ** 32 - 1));
    expect(first(2n ** 32n + 7n)).toBe(first(7));
    expect(first(-(2n ** 63n))).toBe(first(0));
    expect(first(1)).not.toBe(first(0));
    expect(() => new TorchGenerator(2n ** 64n)).toThrow(/seed 18446744073709551616 is not an integer/);
    expect(() => new TorchGenerator(-(2n ** 63n) - 1n)).toThrow(/seed/);
    expect(() => new TorchGenerator(1.5)).toThrow(/seed 1.5/);
    expect(() => new TorchGenerator(2 ** 53)).toThrow(/seed/); // not exactly representable: pass a bigint
  });
});

describe('randn vs torch.randn (randn.safetensors)', async () => {
  const samples = await readReference(`${TINY_REF}/randn.safetensors`);
  const single = [...samples.keys()].filter((k) => !k.startsWith('seq.'));

  it('covers both paths: < 16 elements (double Box–Muller) and ≥ 16 (float32 blocks, ragged tails)', () => {
    expect(single.length).toBe(21);
    const sizes = new Set(single.map((k) => ref(samples, k).data.length));
    expect([...sizes].sort((a, b) => a - b)).toEqual([4, 15, 16, 17, 30, 256, 16384]);
  });

  for (const name of single) {
    it(name, () => {
      const seed = Number(/^seed(\d+)\./.exec(name)![1]);
      const expected = ref(samples, name);
      expectBitwise(new TorchGenerator(seed).randn(expected.shape), expected.data, name);
    });
  }

  it('consecutive draws continue the stream (seq.seed42.first, .second)', () => {
    const g = new TorchGenerator(42);
    expectBitwise(g.randn([1, 4, 8, 8]), ref(samples, 'seq.seed42.first').data, 'first');
    expectBitwise(g.randn([1, 4, 8, 8]), ref(samples, 'seq.seed42.second').data, 'second');
  });
});

describe('randn vs the reference pipelines’ draws (e2e_*.safetensors)', () => {
  const index = JSON.parse(readFileSync(`${TINY_REF}/index.json`, 'utf8')) as {
    e2e: Record<string, { kind: 't2i' | 'i2i'; seed: number; num_unet_calls: number; random_draws: { shape: number[] }[] }>;
  };
  for (const [name, run] of Object.entries(index.e2e)) {
    it(`${name}: every draw in order from one generator seeded ${run.seed}`, async () => {
      const tensors = await readReference(`${TINY_REF}/e2e_${name}.safetensors`);
      const steps = Array.from({ length: run.num_unet_calls }, (_, k) => `step${k}.noise`);
      const order = run.kind === 't2i' ? ['initial_latents', ...steps] : ['posterior_noise', 'add_noise_noise', ...steps];
      expect(order.length).toBe(run.random_draws.length);
      const g = new TorchGenerator(run.seed);
      order.forEach((draw, i) => {
        const expected = ref(tensors, `${name}.${draw}`);
        expect(expected.shape).toEqual(run.random_draws[i]!.shape);
        expectBitwise(g.randn(run.random_draws[i]!.shape), expected.data, `${name}.${draw}`);
      });
    });
  }
});

describe('stream semantics of torch’s two paths', () => {
  it('small draws hand the cached second Box–Muller value to the next call', () => {
    const whole = new TorchGenerator(3).randn([6]);
    const g = new TorchGenerator(3);
    const parts = [...g.randn([3]), ...g.randn([3])];
    expect(Float32Array.from(parts)).toEqual(whole);
  });

  it('a large draw leaves the cache alone; manualSeed clears it', () => {
    const fourth = new TorchGenerator(5).randn([4])[3]!; // the cached sin of the second pair
    const g = new TorchGenerator(5);
    g.randn([3]);
    g.randn([40]);
    expect(g.randn([1])[0]).toBe(fourth);
    g.manualSeed(5);
    expect(g.randn([1])[0]).toBe(new TorchGenerator(5).randn([1])[0]);
  });

  it('a ragged large draw consumes n + 16 outputs, a block-aligned one n, a small one 4 per pair', () => {
    const outputs = (n: number): number => {
      const g = new TorchGenerator(11);
      g.randn([n]);
      const next = g.nextUint32();
      const fresh = new TorchGenerator(11);
      for (let used = 0; used < 200; used++) if (fresh.nextUint32() === next) return used;
      throw new Error('not found');
    };
    expect(outputs(17)).toBe(33);
    expect(outputs(48)).toBe(48);
    expect(outputs(5)).toBe(12); // three pairs of 53-bit uniforms, two 32-bit words each
  });

  it('rejects bad shapes and gives an empty draw for a zero dimension', () => {
    expect(() => new TorchGenerator(0).randn([2, -1])).toThrow(/bad shape \[2, -1\]/);
    expect(new TorchGenerator(0).randn([3, 0]).length).toBe(0);
  });
});
