// diffusers 0.27's Euler schedulers, reduced to plain numbers: the timesteps, the sigmas and,
// per step, the coefficients of the update
//   x' = x + ε·(σ_down − σ) + noise·σ_up
// that the GPU applies elementwise. EulerAncestralDiscreteScheduler (SDXL-Turbo) is that
// ancestral step; EulerDiscreteScheduler (SDXL base) with s_churn 0 is the plain Euler step
// x' = x + ε·(σ_next − σ): σ_down = σ_next, σ_up = 0. Both draw one noise tensor per step
// (Euler's goes unused), so the generator stays in step with torch either way. The tables
// reproduce torch's float32 arithmetic bit for bit (see linspaceF32 and cumprodF32), so
// timesteps and sigmas equal the reference's.

import { fmaf } from '../float32.js';
import { UsageError } from '../errors.js';
import { ConfigReader } from '../models/config.js';
import { CONFIG_BOUNDS } from '../models/config-bounds.js';

const f = Math.fround;

export type BetaSchedule = 'scaled_linear' | 'linear';
export type TimestepSpacing = 'trailing' | 'leading' | 'linspace';
/** euler: EulerDiscreteScheduler; euler-a: EulerAncestralDiscreteScheduler. */
export type SchedulerName = 'euler' | 'euler-a';

export const SCHEDULERS: readonly SchedulerName[] = ['euler', 'euler-a'];
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];
const CLASS_NAMES: Record<SchedulerName, string> = { euler: 'EulerDiscreteScheduler', 'euler-a': 'EulerAncestralDiscreteScheduler' };

/** What replaces the config's class and spacing, as `Class.from_config(config, timestep_spacing=…)`. */
export interface SchedulerOverrides {
  readonly scheduler?: SchedulerName;
  readonly timestepSpacing?: TimestepSpacing;
}

/** scheduler_config.json, reduced to the settings both Euler schedulers read. */
export interface EulerConfig {
  readonly scheduler: SchedulerName;
  readonly numTrainTimesteps: number;
  readonly betaStart: number;
  readonly betaEnd: number;
  readonly betaSchedule: BetaSchedule;
  readonly timestepSpacing: TimestepSpacing;
  readonly stepsOffset: number;
}

// Keys of the shared scheduler config format that the Euler schedulers ignore (they are other
// schedulers' settings; sdxl-turbo's file carries them).
const IGNORED_KEYS = ['_diffusers_version', 'clip_sample', 'sample_max_value', 'set_alpha_to_one', 'skip_prk_steps'];
const READ_KEYS = [
  '_class_name', 'num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'trained_betas',
  'prediction_type', 'timestep_spacing', 'steps_offset', 'rescale_betas_zero_snr',
];
// EulerDiscreteScheduler's own settings, checked when it runs; EulerAncestralDiscreteScheduler
// ignores them, as from_config does (SDXL base's file carries them).
const EULER_KEYS = ['interpolation_type', 'use_karras_sigmas', 'sigma_min', 'sigma_max', 'timestep_type', 'final_sigmas_type'];

/**
 * Parses scheduler_config.json (text or parsed). Defaults are diffusers' own. `overrides`
 * replace the class and the spacing as `Class.from_config(config, timestep_spacing=…)` does;
 * the values are checked by the caller (options.ts).
 */
export function parseSchedulerConfig(json: unknown, where = 'scheduler/scheduler_config.json', overrides: SchedulerOverrides = {}): EulerConfig {
  const fields = typeof json === 'string' ? (JSON.parse(json) as unknown) : json;
  const c = new ConfigReader(fields, where, CONFIG_BOUNDS.scheduler);
  const className = c.oneOf('_class_name', [CLASS_NAMES['euler-a'], CLASS_NAMES.euler], CLASS_NAMES['euler-a']);
  const scheduler = overrides.scheduler ?? (className === CLASS_NAMES.euler ? 'euler' : 'euler-a');
  const known = [...READ_KEYS, ...IGNORED_KEYS, ...EULER_KEYS];
  const unknown = Object.keys(fields as object).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new UsageError(`${where}: unsupported key(s) ${unknown.map((k) => `"${k}"`).join(', ')} for ${CLASS_NAMES[scheduler]}`);
  if (scheduler === 'euler') {
    c.literal('interpolation_type', ['linear'], 'linear');
    c.literal('use_karras_sigmas', [false], false);
    c.literal('sigma_min', [null], null);
    c.literal('sigma_max', [null], null);
    c.literal('timestep_type', ['discrete'], 'discrete');
    c.literal('final_sigmas_type', ['zero'], 'zero');
  }
  c.literal('trained_betas', [null], null);
  c.oneOf('prediction_type', ['epsilon'], 'epsilon');
  c.literal('rescale_betas_zero_snr', [false], false);
  const config: EulerConfig = {
    scheduler,
    numTrainTimesteps: c.int('num_train_timesteps', 1000),
    betaStart: c.number('beta_start', 0.0001),
    betaEnd: c.number('beta_end', 0.02),
    betaSchedule: c.oneOf('beta_schedule', ['scaled_linear', 'linear'], 'linear'),
    timestepSpacing: overrides.timestepSpacing ?? c.oneOf('timestep_spacing', TIMESTEP_SPACINGS, 'linspace'),
    stepsOffset: c.int('steps_offset', 0),
  };
  if (config.betaStart > config.betaEnd) throw new UsageError(`${where}: "beta_start" ${config.betaStart} is above "beta_end" ${config.betaEnd}`);
  return config;
}

/** Per-step numbers of the Euler update from σ = sigmas[i] to σ_next = sigmas[i+1]. */
export interface EulerStep {
  /** What the UNet is called with (a float: 999, 749, …). */
  readonly timestep: number;
  readonly sigma: number;
  readonly sigmaNext: number;
  /** scale_model_input: the UNet sees x · inputScale = x / √(σ² + 1). */
  readonly inputScale: number;
  /** 0 for plain Euler: its step's noise goes unused. */
  readonly sigmaUp: number;
  readonly sigmaDown: number;
  /** σ_down − σ: the factor of ε in x' = x + ε·dt + noise·σ_up. */
  readonly dt: number;
}

/** EulerDiscreteScheduler (s_churn 0) or EulerAncestralDiscreteScheduler, by config.scheduler. */
export class EulerScheduler {
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** σ(t) = √((1 − ᾱ_t) / ᾱ_t) for t = 0 … numTrainTimesteps − 1. */
  readonly trainSigmas: Float32Array;

  constructor(readonly config: EulerConfig) {
    const n = config.numTrainTimesteps;
    const b =
      config.betaSchedule === 'scaled_linear'
        ? linspaceF32(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), n).map((x) => x * x)
        : linspaceF32(config.betaStart, config.betaEnd, n);
    this.betas = b;
    this.alphasCumprod = cumprodF32(b.map((x) => 1 - x));
    this.trainSigmas = this.alphasCumprod.map((a) => Math.sqrt(f(f(1 - a) / a)));
  }

  static fromConfigJson(json: unknown, overrides?: SchedulerOverrides, where?: string): EulerScheduler {
    return new EulerScheduler(parseSchedulerConfig(json, where, overrides));
  }

  /** set_timesteps(steps): the text-to-image schedule. */
  schedule(steps: number): EulerSchedule {
    const n = this.config.numTrainTimesteps;
    if (!Number.isSafeInteger(steps) || steps < 1 || steps > n) {
      throw new Error(`scheduler: steps is ${steps}, expected an integer in [1, ${n}]`);
    }
    const timesteps = this.timesteps(steps);
    const sigmas = new Float32Array(timesteps.length + 1); // the final 0 stays
    timesteps.forEach((t, i) => (sigmas[i] = interp(t, this.trainSigmas)));
    let max = 0;
    for (const s of sigmas) max = Math.max(max, s);
    // diffusers: σ_max for linspace/trailing spacing, √(σ_max² + 1) for leading (in float32).
    const initNoiseSigma = this.config.timestepSpacing === 'leading' ? Math.sqrt(f(f(max * max) + 1)) : max;
    return new EulerSchedule(timesteps, sigmas, f(initNoiseSigma), this.config.scheduler === 'euler-a');
  }

  /**
   * Image-to-image: of the `steps`-step schedule, the last int(steps·strength) steps, as
   * diffusers' get_timesteps keeps them. The starting latents are image_latents + noise·sigmas[0]
   * (add_noise at the first kept timestep; initNoiseSigma does not apply).
   */
  img2imgSchedule(steps: number, strength: number): EulerSchedule {
    if (!(strength > 0 && strength <= 1)) throw new Error(`img2img: strength is ${strength}, expected a number in (0, 1]`);
    const full = this.schedule(steps);
    const kept = Math.min(Math.floor(steps * strength), steps);
    if (kept < 1) {
      throw new Error(`img2img: steps ${steps} × strength ${strength} = ${steps * strength} < 1 leaves no denoising step; raise steps or strength`);
    }
    const start = steps - kept;
    return new EulerSchedule(full.timesteps.slice(start), full.sigmas.slice(start), full.initNoiseSigma, full.ancestral);
  }

  private timesteps(steps: number): Float32Array {
    const { numTrainTimesteps: n, stepsOffset, timestepSpacing } = this.config;
    if (timestepSpacing === 'trailing') {
      // np.arange(n, 0, -n/steps).round() − 1, with numpy's arange: start + i·(second − start).
      const ratio = n / steps;
      const count = Math.ceil(n / ratio);
      const delta = n - ratio - n;
      return Float32Array.from({ length: count }, (_, i) => roundHalfEven(n + i * delta) - 1);
    }
    if (timestepSpacing === 'leading') {
      const ratio = Math.floor(n / steps);
      return Float32Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + stepsOffset);
    }
    // np.linspace(0, n − 1, steps)[::-1]: k·step, the last one exactly n − 1 ([0] for one step).
    if (steps === 1) return new Float32Array([0]);
    const step = (n - 1) / (steps - 1);
    return Float32Array.from({ length: steps }, (_, i) => (i === 0 ? n - 1 : (steps - 1 - i) * step));
  }
}

/** The timesteps of one run, their sigmas (plus the σ after the last step, 0 at the end). */
export class EulerSchedule {
  constructor(
    readonly timesteps: Float32Array,
    readonly sigmas: Float32Array,
    /** Text-to-image: the initial latents are randn · initNoiseSigma. */
    readonly initNoiseSigma: number,
    /** Euler-ancestral (noise·σ_up added each step) or plain Euler. */
    readonly ancestral: boolean,
  ) {}

  get length(): number {
    return this.timesteps.length;
  }

  /** The numbers of step i, in float32 as diffusers computes them. */
  step(i: number): EulerStep {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.length) throw new Error(`scheduler: step ${i} of a ${this.length}-step schedule`);
    const sigma = this.sigmas[i]!;
    const sigmaNext = this.sigmas[i + 1]!;
    const from2 = f(sigma * sigma);
    const to2 = f(sigmaNext * sigmaNext);
    // Plain Euler: s_churn 0 makes σ_hat = σ·(0 + 1) = σ, and the step ends at σ_next.
    const sigmaUp = this.ancestral ? f(Math.sqrt(f(f(to2 * f(from2 - to2)) / from2))) : 0;
    const sigmaDown = this.ancestral ? f(Math.sqrt(f(to2 - f(sigmaUp * sigmaUp)))) : sigmaNext;
    return {
      timestep: this.timesteps[i]!,
      sigma,
      sigmaNext,
      inputScale: 1 / f(Math.sqrt(f(from2 + 1))),
      sigmaUp,
      sigmaDown,
      dt: f(sigmaDown - sigma),
    };
  }

  /**
   * scheduler.step on the CPU (for tests): the same float32 operations in the same order as
   * diffusers, so it reproduces the reference bit for bit. `noise` is the step's randn draw
   * (plain Euler adds it times σ_up = 0, which leaves every value as diffusers has it).
   */
  cpuStep(i: number, modelOutput: Float32Array, sample: Float32Array, noise: Float32Array): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    if (modelOutput.length !== sample.length || noise.length !== sample.length) {
      throw new Error(`scheduler.cpuStep: lengths differ (model output ${modelOutput.length}, sample ${sample.length}, noise ${noise.length})`);
    }
    const { sigma, sigmaUp, dt } = this.step(i);
    const predOriginalSample = new Float32Array(sample.length);
    const prevSample = new Float32Array(sample.length);
    for (let k = 0; k < sample.length; k++) {
      const x = sample[k]!;
      const x0 = f(x - f(sigma * modelOutput[k]!));
      const derivative = f(f(x - x0) / sigma);
      predOriginalSample[k] = x0;
      prevSample[k] = f(x + f(derivative * dt)) + f(noise[k]! * sigmaUp);
    }
    return { prevSample, predOriginalSample };
  }
}

/**
 * torch.linspace(start, end, n, dtype=float32) on x86 CPUs (torch 1.13, AVX2 kernel): the
 * first half counts up from start, the second down from end; values come in vectors of 8,
 * each vector's base start + step·i (or end − step·(n − 1 − i)) and its lanes base + k·step,
 * every product fused into its sum; a tail of under 16 is scalar.
 */
function linspaceF32(start: number, end: number, n: number): Float32Array {
  const a = f(start);
  const b = f(end);
  const step = f(f(b - a) / (n - 1));
  const half = Math.floor(n / 2);
  const at = (i: number): number => (i < half ? fmaf(step, i, a) : fmaf(-step, n - 1 - i, b));
  const out = new Float32Array(n);
  const vectorEnd = n - (n % 16);
  for (let i = 0; i < vectorEnd; i += 8) {
    const base = at(i);
    for (let k = 0; k < 8; k++) out[i + k] = fmaf(k, step, base);
  }
  for (let i = vectorEnd; i < n; i++) out[i] = at(i);
  return out;
}

/** torch.cumprod on a float32 CPU tensor: a double running product, stored as float32. */
function cumprodF32(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  let acc = 1;
  values.forEach((v, i) => (out[i] = acc *= v));
  return out;
}

/** np.interp(t, arange(len), table) in double (t is on the grid except for linspace spacing). */
function interp(t: number, table: Float32Array): number {
  const last = table.length - 1;
  if (t <= 0) return table[0]!;
  if (t >= last) return table[last]!;
  const j = Math.floor(t);
  if (j === t) return table[j]!;
  return (table[j + 1]! - table[j]!) * (t - j) + table[j]!; // slope over a grid step of 1
}

/** numpy's round: half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
