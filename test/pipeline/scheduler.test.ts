// The Euler schedulers vs diffusers' numbers: EulerAncestralDiscreteScheduler against
// tiny-sdxl-reference/scheduler.safetensors and the step-by-step records of the e2e runs, built
// from sdxl-turbo's real config; both schedulers against the guided runs' records
// (tiny-sdxl-extensions/guidance), with the guidance combine done as diffusers does in float32.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TorchGenerator } from '../../src/pipeline/rng.js';
import { EulerScheduler, parseSchedulerConfig } from '../../src/pipeline/scheduler.js';
import { FIXTURES, readReference, ref, TINY, TINY_REF } from '../helpers/fixtures.js';
import { maxAbsDiff, relL2 } from '../helpers/gpu.js';

const configText = readFileSync(`${FIXTURES}sdxl-turbo-layout/scheduler/scheduler_config.json`, 'utf8');
const config = JSON.parse(configText) as Record<string, unknown>;
const scheduler = EulerScheduler.fromConfigJson(configText);
const f = Math.fround;

describe('EulerAncestralDiscreteScheduler tables and schedules (scheduler.safetensors)', async () => {
  const tables = await readReference(`${TINY_REF}/scheduler.safetensors`);
  // torch computes these in float32 and we reproduce its operations, so: exact.
  const exact = (actual: ArrayLike<number>, name: string): void => {
    const expected = ref(tables, name).data;
    expect({ name, length: actual.length, maxAbsDiff: maxAbsDiff(actual, expected) }).toEqual({ name, length: expected.length, maxAbsDiff: 0 });
  };

  it('betas, alphas_cumprod and training sigmas, bit for bit', () => {
    exact(scheduler.betas, 'betas');
    exact(scheduler.alphasCumprod, 'alphas_cumprod');
    exact(scheduler.trainSigmas, 'sigmas_train');
  });

  for (const steps of [1, 2, 3, 4]) {
    it(`${steps} step(s): timesteps, sigmas (final 0), init_noise_sigma = σ_max`, () => {
      const s = scheduler.schedule(steps);
      exact(s.timesteps, `steps${steps}.timesteps`);
      exact(s.sigmas, `steps${steps}.sigmas`);
      exact([s.initNoiseSigma], `steps${steps}.init_noise_sigma`);
      expect(s.length).toBe(steps);
    });
  }

  for (const [steps, strength] of [[2, 0.5], [4, 0.5], [4, 0.75], [3, 0.5], [1, 1.0]] as const) {
    it(`img2img ${steps} steps, strength ${strength}: timesteps and the add_noise sigma`, () => {
      const s = scheduler.img2imgSchedule(steps, strength);
      exact(s.timesteps, `img2img.steps${steps}.strength${Number.isInteger(strength) ? strength.toFixed(1) : strength}.timesteps`);
      const full = scheduler.schedule(steps);
      const start = full.length - s.length;
      expect(s.sigmas).toEqual(full.sigmas.slice(start)); // steps continue on the full schedule's sigmas
      expect(s.sigmas[s.length]).toBe(0);
    });
  }

  for (const [name, index] of [['step_first', 0], ['step_last', 3]] as const) {
    it(`${name}: σ_up, σ_down, the noise drawn and step() outputs, bit for bit`, () => {
      const s = scheduler.schedule(4);
      const k = s.step(index);
      expect(k.timestep).toBe(ref(tables, `${name}.timestep`).data[0]);
      exact([k.sigmaUp], `${name}.sigma_up`);
      exact([k.sigmaDown], `${name}.sigma_down`);
      const sample = ref(tables, `${name}.sample`);
      const noise = new TorchGenerator(4321 + index).randn(sample.shape);
      exact(noise, `${name}.noise`);
      const out = s.cpuStep(index, ref(tables, `${name}.model_output`).data, sample.data, noise);
      exact(out.prevSample, `${name}.prev_sample`);
      exact(out.predOriginalSample, `${name}.pred_original_sample`);

      // The GPU's form x + ε·dt + noise·σ_up skips diffusers' round trip through x0: float32
      // rounding of a few operations on values ~|x| ≤ 60, so ≈ 1e-7 relative.
      const eps = ref(tables, `${name}.model_output`).data;
      const moved = sample.data.map((x, i) => x + eps[i]! * k.dt + noise[i]! * k.sigmaUp);
      expect(relL2(moved, ref(tables, `${name}.prev_sample`).data)).toBeLessThan(1e-6);
    });
  }
});

describe('the e2e runs step by step (e2e_*.safetensors)', () => {
  const index = JSON.parse(readFileSync(`${TINY_REF}/index.json`, 'utf8')) as {
    e2e: Record<string, { kind: 't2i' | 'i2i'; seed: number; steps: number; strength?: number; timesteps: number[] }>;
  };
  for (const [name, run] of Object.entries(index.e2e)) {
    it(`${name}: start latents, UNet inputs and every step's latents`, async () => {
      const t = await readReference(`${TINY_REF}/e2e_${name}.safetensors`);
      const get = (key: string): Float32Array => ref(t, `${name}.${key}`).data;
      const s = run.kind === 't2i' ? scheduler.schedule(run.steps) : scheduler.img2imgSchedule(run.steps, run.strength!);
      expect(Array.from(s.timesteps)).toEqual(run.timesteps);

      // Start latents: randn·init_noise_sigma, or image latents + noise·σ(first kept timestep).
      let latents: Float32Array =
        run.kind === 't2i'
          ? get('initial_latents').map((x) => x * s.initNoiseSigma)
          : get('image_latents').map((x, i) => x + f(get('add_noise_noise')[i]! * s.sigmas[0]!));
      expect(maxAbsDiff(latents, get(run.kind === 't2i' ? 'scaled_initial_latents' : 'noisy_latents'))).toBe(0);

      for (let i = 0; i < s.length; i++) {
        const k = s.step(i);
        expect(k.timestep).toBe(get(`step${i}.timestep`)[0]);
        // diffusers divides by √(σ²+1); the GPU multiplies by the reciprocal rounded to
        // float32: two roundings instead of one, ≈ 1 ulp (measured relL2 ≤ 6.8e-8).
        const scale = f(k.inputScale);
        const unetIn = latents.map((x) => x * scale);
        expect(relL2(unetIn, get(`step${i}.unet_sample`))).toBeLessThan(2e-7);
        const { prevSample } = s.cpuStep(i, get(`step${i}.noise_pred`), latents, get(`step${i}.noise`));
        expect(maxAbsDiff(prevSample, get(`step${i}.latents`))).toBe(0);
        latents = prevSample;
      }
      expect(maxAbsDiff(latents, get('final_latents'))).toBe(0);
    });
  }
});

describe('other spacings and diffusers’ edge cases', () => {
  const withSpacing = (spacing: string): EulerScheduler =>
    EulerScheduler.fromConfigJson({ ...config, timestep_spacing: spacing });

  it("'leading': (steps−1−i)·⌊1000/steps⌋ + steps_offset, init sigma √(σ_max² + 1)", () => {
    const s = withSpacing('leading').schedule(4);
    expect(Array.from(s.timesteps)).toEqual([751, 501, 251, 1]);
    expect(s.sigmas[0]).toBe(scheduler.trainSigmas[751]);
    expect(s.initNoiseSigma).toBe(f(Math.sqrt(f(f(s.sigmas[0]! ** 2) + 1))));
  });

  it("'linspace': fractional timesteps get interpolated sigmas; one step is t = 0", () => {
    const s = withSpacing('linspace').schedule(3);
    expect(Array.from(s.timesteps)).toEqual([999, 499.5, 0]);
    const [lo, hi] = [scheduler.trainSigmas[499]!, scheduler.trainSigmas[500]!];
    expect(s.sigmas[1]).toBe(f(lo + (hi - lo) * 0.5));
    expect(s.initNoiseSigma).toBe(s.sigmas[0]);
    expect(Array.from(withSpacing('linspace').schedule(1).timesteps)).toEqual([0]);
  });

  it("'trailing' keeps numpy's arange: 61 steps give 62 timesteps, the last −1 (as diffusers)", () => {
    const s = scheduler.schedule(61);
    expect(s.length).toBe(62);
    expect(s.timesteps[61]).toBe(-1);
    expect(s.sigmas[61]).toBe(scheduler.trainSigmas[0]);
    // numpy rounds half to even: 16 steps of 62.5 → 937.5 → 938 − 1, 812.5 → 812 − 1
    expect(Array.from(scheduler.schedule(16).timesteps.slice(0, 4))).toEqual([999, 937, 874, 811]);
  });

  it('linear betas run from beta_start to beta_end', () => {
    const s = EulerScheduler.fromConfigJson({ ...config, beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02 });
    expect(s.betas[0]).toBe(f(0.0001));
    expect(s.betas[999]).toBe(f(0.02));
    const step = (0.02 - 0.0001) / 999;
    expect(maxAbsDiff(s.betas, s.betas.map((_, i) => 0.0001 + step * i))).toBeLessThan(2e-9); // float32 ulp at 0.02
  });

  it('img2img: strength outside (0, 1] and steps × strength < 1 are errors naming the values', () => {
    expect(() => scheduler.img2imgSchedule(4, 0)).toThrow(/strength is 0, expected a number in \(0, 1\]/);
    expect(() => scheduler.img2imgSchedule(4, 1.5)).toThrow(/strength is 1.5/);
    expect(() => scheduler.img2imgSchedule(4, Number.NaN)).toThrow(/strength is NaN/);
    expect(() => scheduler.img2imgSchedule(1, 0.5)).toThrow(/steps 1 × strength 0.5 = 0.5 < 1/);
    expect(() => scheduler.img2imgSchedule(3, 0.3)).toThrow(/steps 3 × strength 0.3/);
    expect(scheduler.img2imgSchedule(3, 0.34).length).toBe(1);
  });

  it('rejects bad step counts and step indices', () => {
    expect(() => scheduler.schedule(0)).toThrow(/steps is 0, expected an integer in \[1, 1000\]/);
    expect(() => scheduler.schedule(2.5)).toThrow(/steps is 2.5/);
    expect(() => scheduler.schedule(4).step(4)).toThrow(/step 4 of a 4-step schedule/);
    const s = scheduler.schedule(2);
    expect(() => s.cpuStep(0, new Float32Array(3), new Float32Array(4), new Float32Array(4))).toThrow(/lengths differ/);
  });

  it('reads exactly the settings it supports; anything else is an error naming the key', () => {
    const parsed = parseSchedulerConfig(config);
    expect(parsed).toEqual({
      scheduler: 'euler-a', numTrainTimesteps: 1000, betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear', timestepSpacing: 'trailing', stepsOffset: 1,
    });
    const bad = (patch: Record<string, unknown>, message: RegExp): void => {
      expect(() => parseSchedulerConfig({ ...config, ...patch })).toThrow(message);
    };
    bad({ prediction_type: 'v_prediction' }, /"prediction_type" is "v_prediction"/);
    bad({ trained_betas: [0.1, 0.2] }, /"trained_betas" is \[0.1,0.2\]/);
    bad({ beta_schedule: 'squaredcos_cap_v2' }, /"beta_schedule" is "squaredcos_cap_v2"/);
    bad({ timestep_spacing: 'karras' }, /"timestep_spacing" is "karras"/);
    bad({ rescale_betas_zero_snr: true }, /"rescale_betas_zero_snr" is true/);
    bad({ _class_name: 'DDIMScheduler' }, /"_class_name" is "DDIMScheduler"/);
    bad({ s_noise: 1 }, /unsupported key\(s\) "s_noise" for EulerAncestralDiscreteScheduler/);
    bad({ beta_end: 1.5 }, /"beta_end" is 1.5/);
    expect(() => parseSchedulerConfig('[]')).toThrow(/not a JSON object/);
  });
});

describe('EulerDiscreteScheduler and the overrides of from_config(…, timestep_spacing=…)', () => {
  // SDXL base's scheduler_config.json: sdxl-turbo's with Euler's own settings.
  const base = { ...config, _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'leading', interpolation_type: 'linear', use_karras_sigmas: false };

  it("reads SDXL base's config as Euler, leading; the options replace class and spacing", () => {
    expect(parseSchedulerConfig(base)).toMatchObject({ scheduler: 'euler', timestepSpacing: 'leading' });
    expect(parseSchedulerConfig(config, undefined, { scheduler: 'euler', timestepSpacing: 'linspace' })).toMatchObject({ scheduler: 'euler', timestepSpacing: 'linspace' });
    expect(parseSchedulerConfig(base, undefined, { scheduler: 'euler-a' })).toMatchObject({ scheduler: 'euler-a', timestepSpacing: 'leading' });
    // Euler's own settings are checked when Euler runs, ignored by Euler-A (as from_config).
    expect(() => parseSchedulerConfig({ ...base, use_karras_sigmas: true })).toThrow(/"use_karras_sigmas" is true/);
    expect(() => parseSchedulerConfig({ ...base, interpolation_type: 'log_linear' })).toThrow(/"interpolation_type" is "log_linear"/);
    expect(parseSchedulerConfig({ ...base, use_karras_sigmas: true }, undefined, { scheduler: 'euler-a' }).scheduler).toBe('euler-a');
    expect(() => parseSchedulerConfig({ ...config, s_noise: 1 }, 'x.json', { scheduler: 'euler' })).toThrow(/x.json: unsupported key\(s\) "s_noise" for EulerDiscreteScheduler/);
  });

  it('plain Euler: σ_up = 0, σ_down = σ_next, so x\' = x + ε·(σ_next − σ); same tables as Euler-A', () => {
    const euler = EulerScheduler.fromConfigJson(base);
    expect(euler.trainSigmas).toEqual(scheduler.trainSigmas);
    const s = euler.schedule(3);
    expect(Array.from(s.timesteps)).toEqual([667, 334, 1]);
    for (let i = 0; i < 3; i++) {
      const k = s.step(i);
      expect(k).toMatchObject({ sigmaUp: 0, sigmaDown: s.sigmas[i + 1], dt: f(s.sigmas[i + 1]! - s.sigmas[i]!) });
    }
  });
});

describe('the guided runs step by step (tiny-sdxl-extensions/guidance)', async () => {
  const GUIDANCE = `${FIXTURES}tiny-sdxl-extensions/guidance`;
  const index = JSON.parse(readFileSync(`${GUIDANCE}/index.json`, 'utf8')) as {
    guidance: { cases: Array<{ name: string; kind: 't2i' | 'i2i'; guidance_scale: number; steps: number; strength?: number; scheduler_class: string; scheduler_config_overrides: { timestep_spacing?: 'leading' }; timesteps: number[] }> };
  };
  const tinyConfig = readFileSync(`${TINY}/scheduler/scheduler_config.json`, 'utf8');
  const t = await readReference(`${GUIDANCE}/guidance.safetensors`);
  for (const c of index.guidance.cases) {
    it(`${c.name}: timesteps, init_noise_sigma, UNet inputs, guidance and every step, bit for bit`, () => {
      const get = (key: string): Float32Array => ref(t, `${c.name}.${key}`).data;
      const overrides = { scheduler: c.scheduler_class === 'EulerDiscreteScheduler' ? 'euler' : 'euler-a', timestepSpacing: c.scheduler_config_overrides.timestep_spacing } as const;
      const sched = EulerScheduler.fromConfigJson(tinyConfig, overrides);
      const s = c.kind === 't2i' ? sched.schedule(c.steps) : sched.img2imgSchedule(c.steps, c.strength!);
      expect(Array.from(s.timesteps)).toEqual(c.timesteps);
      // Image-to-image records no start latents: its checks start from step 0's result.
      let latents: Float32Array | null = null;
      if (c.kind === 't2i') {
        expect(s.initNoiseSigma).toBe(get('init_noise_sigma')[0]); // √(σ_max² + 1) for leading
        latents = get('initial_latents').map((x) => x * s.initNoiseSigma);
      }
      for (let i = 0; i < s.length; i++) {
        const k = s.step(i);
        expect(k.timestep).toBe(get(`step${i}.timestep`)[0]);
        const sample = get(`step${i}.unet_sample`);
        const half = sample.length / 2;
        expect(maxAbsDiff(sample.subarray(0, half), sample.subarray(half))).toBe(0); // [negative, positive] copies
        // ε = uncond + g·(text − uncond), each operation rounded to float32 as torch does.
        const uncond = get(`step${i}.noise_pred_uncond`);
        const text = get(`step${i}.noise_pred_text`);
        const eps = uncond.map((u, j) => u + f(c.guidance_scale * f(text[j]! - u)));
        if (latents) {
          const scale = f(k.inputScale);
          // One more rounding than diffusers' division (see the e2e runs above).
          expect(relL2(latents.map((x) => x * scale), sample.subarray(half))).toBeLessThan(2e-7);
          const { prevSample } = s.cpuStep(i, eps, latents, get(`step${i}.noise`));
          expect(maxAbsDiff(prevSample, get(`step${i}.latents`))).toBe(0);
        }
        latents = get(`step${i}.latents`);
      }
      expect(maxAbsDiff(latents!, get('final_latents'))).toBe(0);
    });
  }
});
