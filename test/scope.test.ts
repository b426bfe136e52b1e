// Ownership scopes (src/scope.ts): what each scope releases, what survives it, and that the
// pool's live bytes come back to where they were.

import { describe, expect, it } from 'vitest';
import { chain, keep, take, Tensor, tidy } from '../src/tensor.js';
import { testGpu } from './helpers/gpu.js';

const gpu = await testGpu();
const live = (): number => gpu.pool.stats.liveBytes;
/** A fresh pooled activation of n f32 values. */
const make = (n = 64): Tensor => Tensor.empty(gpu, [n], 'f32');

describe('tidy', () => {
  it('releases what the scope made except what it returns', () => {
    const before = live();
    let temp!: Tensor;
    const out = tidy(() => {
      temp = make();
      return make();
    });
    expect(temp.released).toBe(true);
    expect(out.released).toBe(false);
    out.release();
    expect(live()).toBe(before);
  });

  it('moves survivors to the enclosing scope, which releases them unless it returns them too', () => {
    const before = live();
    let inner!: Tensor;
    let innerTemp!: Tensor;
    const out = tidy(() => {
      inner = tidy(() => {
        innerTemp = make();
        return make();
      });
      expect(innerTemp.released).toBe(true);
      expect(inner.released).toBe(false);
      return make();
    });
    expect(inner.released).toBe(true);
    out.release();
    expect(live()).toBe(before);
  });

  it('counts storages: a returned view keeps its storage, a view of an outer tensor leaves it alone', () => {
    const before = live();
    const outer = make(12);
    const view = tidy(() => {
      outer.reshape([3, 4]); // a view made here must not hand `outer` to this scope
      return make(12).reshape([3, 4]);
    });
    expect(outer.released).toBe(false);
    expect(view.released).toBe(false);
    view.release();
    outer.release();
    expect(live()).toBe(before);
  });

  it('walks returned arrays, plain objects and Maps (keys and values)', () => {
    const before = live();
    let dropped!: Tensor;
    const out = tidy(() => {
      dropped = make();
      return { list: [make(), [make()]], byName: new Map([['a', make()]]), byTensor: new Map([[make(), 1]]), none: null };
    });
    expect(dropped.released).toBe(true);
    const kept = [...out.list.flat(), ...out.byName.values(), ...out.byTensor.keys()];
    expect(kept.map((t) => t.released)).toEqual([false, false, false, false]);
    for (const t of kept) t.release();
    expect(live()).toBe(before);
  });

  it('does not look inside other objects (a class instance is not a container)', () => {
    class Box {
      constructor(readonly t: Tensor) {}
    }
    const box = tidy(() => new Box(make()));
    expect(box.t.released).toBe(true);
  });

  it('never owns weights (exact allocations) and leaves tensors made outside any scope to their maker', () => {
    const before = live();
    const outside = make();
    const weight = tidy(() => Tensor.upload(gpu, new Float32Array(4), 'f32', [4], 'f32', { exact: true }));
    tidy(() => outside.reshape([8, 8]));
    expect(weight.released).toBe(false);
    expect(outside.released).toBe(false);
    weight.release();
    outside.release();
    expect(live()).toBe(before);
  });

  it('skips storages released by hand', () => {
    const before = live();
    tidy(() => {
      const t = make();
      t.release();
      make(); // may reuse t's buffer: the scope's end must not release that buffer twice
    });
    expect(live()).toBe(before);
    expect(gpu.pool.stats.pooledBytes).toBeGreaterThan(0);
  });

  it('on a throw releases everything the scope owns (survivors of inner scopes too) and rethrows', () => {
    const before = live();
    const made: Tensor[] = [];
    expect(() =>
      tidy(() => {
        made.push(tidy(() => make()));
        made.push(make());
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(made.map((t) => t.released)).toEqual([true, true]);
    expect(live()).toBe(before);
    // The scope was closed: a tensor made now is untracked again.
    const after = make();
    tidy(() => 0);
    expect(after.released).toBe(false);
    after.release();
  });

  it('rejects an async fn, releasing what it made before its first await', async () => {
    const before = live();
    let t!: Tensor;
    expect(() =>
      tidy(async () => {
        t = make();
        await Promise.resolve();
      }),
    ).toThrow('synchronous');
    expect(t.released).toBe(true);
    expect(live()).toBe(before);
  });
});

describe('keep and take', () => {
  it('keep: no scope releases the tensor; the caller does', () => {
    const before = live();
    let kept!: Tensor;
    tidy(() => {
      tidy(() => {
        kept = keep(make());
      });
    });
    expect(kept.released).toBe(false);
    kept.release();
    expect(live()).toBe(before);
  });

  it('take: the innermost scope becomes the owner and releases it at its end', () => {
    const before = live();
    const skip = make(); // untracked
    let owned!: Tensor;
    const out = tidy(() => {
      owned = make();
      tidy(() => {
        take(skip);
        take(owned);
      });
      expect(owned.released).toBe(true);
      return make();
    });
    expect(skip.released).toBe(true);
    out.release();
    expect(live()).toBe(before);
  });

  it('take refuses weights', () => {
    const weight = Tensor.upload(gpu, new Float32Array(4), 'f32', [4], 'f32', { exact: true });
    expect(() => tidy(() => take(weight))).toThrow('weights');
    expect(weight.released).toBe(false);
    weight.release();
  });
});

describe('chain', () => {
  it('releases each intermediate once the next step has returned, never the input', () => {
    const before = live();
    const x = make();
    const seen: Tensor[] = [];
    const step = (h: Tensor): Tensor => {
      seen.push(h);
      // The previous step's input is gone by now; this step's input is still live.
      if (seen.length > 2) expect(seen[seen.length - 2]!.released).toBe(true);
      expect(h.released).toBe(false);
      return make();
    };
    const out = chain(x, step, step, step, step);
    expect(seen[0]).toBe(x);
    expect(x.released).toBe(false);
    expect(seen.slice(1).map((t) => t.released)).toEqual([true, true, true]);
    expect(live() - before).toBe(2 * 256); // x and out (each one 256-byte size class)
    out.release();
    x.release();
    expect(live()).toBe(before);
  });

  it('keeps an intermediate that a later state still holds', () => {
    const x = make();
    const out = chain({ last: x, all: [x] }, ...[0, 1, 2].map(() => (s: { last: Tensor; all: Tensor[] }) => {
      const next = make();
      return { last: next, all: [...s.all, next] };
    }));
    expect(out.all.map((t) => t.released)).toEqual([false, false, false, false]);
    for (const t of out.all) t.release();
  });

  it('with no steps is x', () => {
    const x = make();
    expect(chain(x)).toBe(x);
    x.release();
  });
});
