// The VAE encoder's posterior (kernels/posterior.wgsl): diffusers' DiagonalGaussianDistribution
// from the moments quant_conv produces.

import source from '../../kernels/posterior.wgsl';
import { defineKernel } from '../gpu/pipeline-cache.js';
import { uniforms } from '../gpu/uniforms.js';
import { formatShape, Tensor } from '../tensor.js';
import { commonDtype, grid, WG } from './common.js';
import { bindWhole } from './windows.js';

const kernel = defineKernel({ name: 'posterior', source, layout: uniforms(['n', 'u32'], ['cs', 'u32']), constants: { WG } });

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
  const input = bindWhole('diagonalGaussian', moments); // the outputs are half its size each
  const shape = [batch, channels / 2, ...spatial];
  const [mean, logvar, std] = ['mean', 'logvar', 'std'].map((name) => Tensor.empty(moments.gpu, shape, dtype, `posterior ${name}`)) as [Tensor, Tensor, Tensor];
  const n = mean.size;
  if (n > 0) {
    moments.gpu.dispatch({
      kernel,
      defines: { T: dtype },
      uniforms: { n, cs: n / batch },
      bindings: [input, mean.binding, logvar.binding, std.binding],
      workgroups: grid(n),
    });
  }
  return { mean, logvar, std };
}
