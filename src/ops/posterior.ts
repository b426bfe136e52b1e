// The VAE encoder's posterior (kernels/posterior.wgsl): diffusers' DiagonalGaussianDistribution
// from the moments quant_conv produces.

import source from '../../kernels/posterior.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { assertBindable } from './aligned-windows.js';
import { commonDtype, grid256 } from './common.js';

const layout = uniforms(['n', 'u32'], ['cs', 'u32']);
const kernel = defineKernel('posterior', source, layout);

/** mean, logvar (clamped to [−30, 20]) and std = exp(logvar / 2), each (B, C, ...spatial);
 *  all three are the caller's to release. */
export interface DiagonalGaussian {
  readonly mean: Tensor;
  readonly logvar: Tensor;
  readonly std: Tensor;
}

/** moments (B, 2C, ...spatial): each image's C mean channels, then its C logvar channels. */
export function diagonalGaussian(moments: Tensor): DiagonalGaussian {
  const dtype = commonDtype('diagonalGaussian', moments);
  const [batch = 0, channels = 0, ...spatial] = moments.shape;
  if (moments.shape.length < 2 || channels % 2 !== 0 || channels === 0) {
    throw new Error(`diagonalGaussian: moments ${formatShape(moments.shape)} must be (B, 2C, ...spatial) with C ≥ 1`);
  }
  assertBindable('diagonalGaussian', moments);
  const shape = [batch, channels / 2, ...spatial];
  const [mean, logvar, std] = ['mean', 'logvar', 'std'].map((name) => Tensor.empty(moments.gpu, shape, dtype, `posterior ${name}`)) as [Tensor, Tensor, Tensor];
  const n = mean.size;
  if (n > 0) {
    moments.gpu.dispatch({
      kernel,
      defines: { T: dtype },
      layout,
      uniforms: { n, cs: n / batch },
      bindings: [moments.binding, mean.binding, logvar.binding, std.binding],
      workgroups: grid256(n),
    });
  }
  return { mean, logvar, std };
}
