// The Euler (ancestral) scheduler's elementwise steps on the latents (kernels/euler.wgsl), the
// step's numbers read from a (3) f32 tensor (eulerCoefficients) the caller writes once per
// step: the dispatches stay the same from step to step, so a recorded step replays exactly.

import source from '../../kernels/euler.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { grid, WG } from './common.js';
import { bindWhole } from './windows.js';

const kernel = defineKernel({ name: 'euler', source, layout: uniforms(['n', 'u32']), constants: { WG } });

/** What a step's coefficients tensor holds: [input scale, dt, σ_up] in f32 (of an EulerStep). */
export function eulerCoefficients(step: { readonly inputScale: number; readonly dt: number; readonly sigmaUp: number }): Float32Array {
  return Float32Array.of(step.inputScale, step.dt, step.sigmaUp);
}

/** scale_model_input: x · c[0] (x f32). */
export function scaleModelInput(x: Tensor, coefficients: Tensor): Tensor {
  return launch('scaleModelInput', 0, x, coefficients, null, null);
}

/** The step x' = (x + ε·dt) + noise·σ_up (plain Euler: `noise` null, x' = x + ε·dt), all f32. */
export function eulerStep(x: Tensor, eps: Tensor, noise: Tensor | null, coefficients: Tensor): Tensor {
  return launch('eulerStep', 1, x, coefficients, eps, noise);
}

function launch(op: string, mode: number, x: Tensor, coefficients: Tensor, eps: Tensor | null, noise: Tensor | null): Tensor {
  for (const [name, t] of [['x', x], ['eps', eps], ['noise', noise]] as const) {
    if (t && (t.dtype !== 'f32' || formatShape(t.shape) !== formatShape(x.shape))) {
      throw new Error(`${op}: ${name} must be f32 of x's shape ${formatShape(x.shape)}, got ${t.dtype} ${formatShape(t.shape)}`);
    }
  }
  if (coefficients.dtype !== 'f32' || coefficients.size !== 3) throw new Error(`${op}: coefficients must be (3) f32, got ${coefficients.dtype} ${formatShape(coefficients.shape)}`);
  const out = Tensor.empty(x.gpu, x.shape, 'f32', op);
  const xs = bindWhole(op, x);
  if (x.size > 0) {
    x.gpu.dispatch({
      kernel,
      defines: { MODE: mode, NOISE: noise !== null },
      uniforms: { n: x.size },
      // Absent operands: x stands in (read only, unused).
      bindings: [xs, coefficients.binding, eps ? bindWhole(op, eps) : xs, noise ? bindWhole(op, noise) : xs, bindWhole(op, out)],
      workgroups: grid(x.size),
    });
  }
  return out;
}
