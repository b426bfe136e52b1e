// The synthetic real-size weights (src/io/synthetic.ts) made on the GPU where they land
// (src/ops/synthetic.ts): a TensorSource whose create() WeightRegistry.load uses, so a
// real-size model loads without generating 3.5e9 values on the CPU and uploading them.
// read() still gives the CPU generator's host data (the same bits).

import type { Gpu } from '../gpu/runtime.js';
import { synthetic } from '../ops/synthetic.js';
import type { DType, Tensor } from '../tensor.js';
import { SyntheticSource } from './synthetic.js';
import type { HostTensor, TensorEntry, TensorSource } from './tensor-source.js';

export class SyntheticGpuSource implements TensorSource {
  readonly description: string;
  readonly entries: ReadonlyMap<string, TensorEntry>;

  constructor(private readonly cpu: SyntheticSource) {
    this.description = `${cpu.description}, generated on the GPU`;
    this.entries = cpu.entries;
  }

  /** `manifest`: the parsed sdxl-turbo-layout/weights-manifest.json; `component`: e.g. 'unet'. */
  static fromManifest(manifest: unknown, component: string): SyntheticGpuSource {
    return new SyntheticGpuSource(SyntheticSource.fromManifest(manifest, component));
  }

  read(name: string): Promise<HostTensor> {
    return this.cpu.read(name);
  }

  create(gpu: Gpu, name: string, dtype: DType, label: string): Tensor {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`${this.description}: no tensor named ${name}`);
    return synthetic(gpu, name, entry.shape, dtype, { label, exact: true });
  }
}
