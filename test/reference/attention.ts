// float64 reference of kernels/attention.wgsl.

import { evaluate } from './util.js';

export interface AttentionRefCase {
  readonly batch: number;
  readonly lq: number;
  readonly lk: number;
  readonly heads: number;
  /** Head dim. */
  readonly d: number;
  readonly causal?: boolean;
}

/** Per (b, h, i): softmax over the visible keys of scale·q·k, then the weighted sum of v, at the
 *  flat output indices `at` (default all); q, out (B, Lq, heads·d), k, v (B, Lk, heads·d). */
export function attentionRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, c: AttentionRefCase, scale: number, at?: ArrayLike<number>): Float64Array {
  const { lq, lk, heads, d } = c;
  const width = heads * d;
  const rows = new Map<number, Float64Array>(); // one (b, i, h) output row per query and head
  const row = (b: number, i: number, h: number): Float64Array => {
    const key = (b * lq + i) * heads + h;
    let out = rows.get(key);
    if (out) return out;
    out = new Float64Array(d);
    const qo = (b * lq + i) * width + h * d;
    const visible = c.causal ? Math.min(lk, i + 1) : lk;
    const logits = new Float64Array(visible);
    let max = -Infinity;
    for (let j = 0; j < visible; j++) {
      const ko = (b * lk + j) * width + h * d;
      let s = 0;
      for (let x = 0; x < d; x++) s += q[qo + x]! * k[ko + x]!;
      logits[j] = s * scale;
      max = Math.max(max, logits[j]!);
    }
    let sum = 0;
    for (let j = 0; j < visible; j++) sum += Math.exp(logits[j]! - max);
    for (let j = 0; j < visible; j++) {
      const p = Math.exp(logits[j]! - max) / sum;
      const vo = (b * lk + j) * width + h * d;
      for (let x = 0; x < d; x++) out[x] += p * v[vo + x]!;
    }
    rows.set(key, out);
    return out;
  };
  return evaluate(c.batch * lq * width, at, (o) => {
    const token = Math.floor(o / width); // b·lq + i
    return row(Math.floor(token / lq), token % lq, Math.floor((o % width) / d))[o % d]!;
  });
}
