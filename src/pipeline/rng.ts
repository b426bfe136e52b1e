// torch's CPU random generator, so that a seed gives the reference pipeline's latents and
// noises: torch.Generator('cpu').manual_seed(seed) (mt19937) and torch.randn(shape,
// generator=…) in float32, which takes one of two paths:
// - fewer than 16 elements: Box–Muller in double per element from 53-bit uniforms; the
//   second value of each pair is cached in the generator and returned by the next call;
// - 16 or more: all elements first get 24-bit float uniforms, then each block of 16 becomes
//   8 (cos, sin) pairs; a ragged tail draws 16 fresh uniforms and recomputes the last 16.
//   torch's x86 build runs this block with AVX2 using Cephes' float32 log and sincos, which
//   we evaluate in float32 too (see cephesLog), giving the same bits.

import { fmaf } from '../float32.js';

const STATE = 624;
const SHIFT = 397;
const f = Math.fround;

/** A torch seed: any integer in [−2⁶³, 2⁶⁴ − 1] (negatives wrap, as in torch). */
export type Seed = number | bigint;

export class TorchGenerator {
  private readonly state = new Uint32Array(STATE);
  private next = STATE;
  private cachedNormal: number | null = null;

  constructor(seed: Seed) {
    this.manualSeed(seed);
  }

  /** Reseeds like torch's manual_seed: mt19937 from the low 32 bits, cache cleared. */
  manualSeed(seed: Seed): this {
    const big = typeof seed === 'bigint' ? seed : Number.isSafeInteger(seed) ? BigInt(seed) : null;
    if (big === null || big < -(2n ** 63n) || big >= 2n ** 64n) {
      throw new Error(`TorchGenerator: seed ${String(seed)} is not an integer in [-2^63, 2^64 - 1]`);
    }
    const s = this.state;
    s[0] = Number(BigInt.asUintN(32, big));
    for (let i = 1; i < STATE; i++) s[i] = Math.imul(1812433253, s[i - 1]! ^ (s[i - 1]! >>> 30)) + i;
    this.next = STATE;
    this.cachedNormal = null;
    return this;
  }

  /** The next 32-bit mt19937 output. */
  nextUint32(): number {
    if (this.next === STATE) this.twist();
    let y = this.state[this.next++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** torch.randn(shape, generator=this) as float32, continuing this generator's stream. */
  randn(shape: readonly number[]): Float32Array {
    let n = 1;
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new Error(`TorchGenerator.randn: bad shape [${shape.join(', ')}]`);
      n *= d;
    }
    return n >= 16 ? this.normalFill(n) : this.normalEach(n);
  }

  private twist(): void {
    const s = this.state;
    for (let i = 0; i < STATE; i++) {
      const y = (s[i]! & 0x80000000) | (s[(i + 1) % STATE]! & 0x7fffffff);
      s[i] = s[(i + SHIFT) % STATE]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.next = 0;
  }

  /** Uniform in [0, 1) with 24 random bits (float32). */
  private uniformFloat(): number {
    return (this.nextUint32() & 0xffffff) * 2 ** -24;
  }

  /** Uniform in [0, 1) with 53 random bits (double), from two outputs, high word first. */
  private uniformDouble(): number {
    const hi = this.nextUint32() & 0x1fffff;
    const lo = this.nextUint32();
    return (hi * 2 ** 32 + lo) * 2 ** -53;
  }

  private normalEach(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (this.cachedNormal !== null) {
        out[i] = this.cachedNormal + 0;
        this.cachedNormal = null;
        continue;
      }
      const u1 = this.uniformDouble();
      const u2 = this.uniformDouble();
      const r = Math.sqrt(-2 * Math.log(1 - u2)); // torch 1.13; later ones write log1p(−u2)
      const theta = 2 * Math.PI * u1;
      this.cachedNormal = r * Math.sin(theta);
      out[i] = r * Math.cos(theta) + 0; // "+ 0": torch's final ·std + mean turns −0 into +0
    }
    return out;
  }

  private normalFill(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uniformFloat();
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16(out, i);
    if (n % 16 !== 0) {
      for (let i = n - 16; i < n; i++) out[i] = this.uniformFloat();
      boxMuller16(out, n - 16);
    }
    return out;
  }
}

const TWO_PI = f(2 * Math.PI);

/** Uniforms data[o .. o+16) → normals: u1 = 1 − data[o+j], u2 = data[o+8+j]. */
function boxMuller16(data: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const radius = f(Math.sqrt(f(-2 * cephesLog(f(1 - data[o + j]!)))));
    const [sin, cos] = cephesSinCos(f(TWO_PI * data[o + 8 + j]!));
    data[o + j] = f(radius * cos) + 0; // + 0 as in normalEach
    data[o + 8 + j] = f(radius * sin) + 0;
  }
}

// Cephes' single-precision polynomials (Moshier), as torch's avx_mathfun.h vectorises them.
// Every step is a float32 operation; the reference build's compiler contracted each
// multiply feeding an add into a fused multiply-add, and where both addends are products it
// fused the first one: reproducing exactly those choices is what makes the output bitwise.
const SQRT_HALF = f(0.707106781186547524);
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(f);
const LOG_Q1 = f(-2.1219444e-4);
const LOG_Q2 = f(0.693359375);
const FOUR_OVER_PI = f(1.27323954473516);
const MINUS_DP = [f(-0.78515625), f(-2.4187564849853515625e-4), f(-3.77489497744594108e-8)];
const SIN_P = [f(-1.9515295891e-4), f(8.3321608736e-3), f(-1.6666654611e-1)];
const COS_P = [f(2.443315711809948e-5), f(-1.388731625493765e-3), f(4.166664568298827e-2)];

const bits = new Float32Array(1);
const bitsU = new Uint32Array(bits.buffer);

/** log(x) for a float32 x in (0, 1] (normal numbers only: the uniforms are ≥ 2⁻²⁴). */
function cephesLog(x: number): number {
  bits[0] = x;
  const word = bitsU[0]!;
  let e = (word >>> 23) - 127 + 1;
  bitsU[0] = (word & ~0x7f800000) | 0x3f000000; // mantissa scaled into [0.5, 1)
  const m = bits[0]!;
  let t: number;
  if (m < SQRT_HALF) {
    e -= 1;
    t = f(f(m - 1) + m);
  } else {
    t = f(m - 1);
  }
  const z = f(t * t);
  let y = LOG_P[0]!;
  for (let k = 1; k < LOG_P.length; k++) y = fmaf(y, t, LOG_P[k]!);
  y = f(y * t);
  y = fmaf(y, z, f(e * LOG_Q1));
  y = fmaf(z, -0.5, y);
  return fmaf(e, LOG_Q2, f(t + y));
}

/** [sin(x), cos(x)] for a float32 x in [0, 2π). */
function cephesSinCos(x: number): [number, number] {
  let j = Math.trunc(f(x * FOUR_OVER_PI));
  j = (j + 1) & ~1; // octant, rounded up to even
  // Extended-precision reduction x − j·π/4 with π/4 split in three parts.
  for (const dp of MINUS_DP) x = fmaf(j, dp, x);
  const z = f(x * x);
  let c = fmaf(COS_P[0]!, z, COS_P[1]!);
  c = fmaf(c, z, COS_P[2]!);
  c = f(c * z);
  c = fmaf(c, z, f(-0.5 * z));
  c = f(c + 1);
  let s = fmaf(SIN_P[0]!, z, SIN_P[1]!);
  s = fmaf(s, z, SIN_P[2]!);
  s = fmaf(f(s * z), x, x);
  const swap = (j & 2) !== 0; // octants 2, 3 (mod 4): sine and cosine polynomials trade places
  let sin = swap ? c : s;
  let cos = swap ? s : c;
  if (j & 4) sin = -sin;
  if (((j - 2) & 4) === 0) cos = -cos;
  return [sin, cos];
}
