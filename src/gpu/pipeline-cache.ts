// Compute pipelines cached by kernel name + specialization, never by shape: shapes are
// uniforms, so a new resolution reuses every compiled pipeline.
//
// Specialization is a tiny preprocessor: each define becomes a declaration prepended to
// the WGSL source —  string → `alias NAME = value;` (dtype), integer → `const NAME: u32`,
// boolean → `const NAME: bool`. An alias to f16 also prepends `enable f16;`.

export type Defines = Readonly<Record<string, string | number | boolean>>;

export interface KernelSource {
  /** Kernel family + entry, e.g. `matmul`. Used in labels and error messages. */
  readonly name: string;
  readonly wgsl: string;
  /** WGSL `struct Params` from the kernel's UniformLayout. */
  readonly params: string;
}

export function specialize(kernel: KernelSource, defines: Defines): string {
  const lines: string[] = [];
  if (Object.values(defines).includes('f16')) lines.push('enable f16;');
  for (const [name, value] of Object.entries(defines)) {
    if (typeof value === 'string') lines.push(`alias ${name} = ${value};`);
    else if (typeof value === 'boolean') lines.push(`const ${name}: bool = ${value};`);
    else if (Number.isInteger(value) && value >= 0) lines.push(`const ${name}: u32 = ${value}u;`);
    else throw new Error(`${kernel.name}: define ${name}=${value} must be a dtype, bool or non-negative integer`);
  }
  return `${lines.join('\n')}\n${kernel.params}\n${kernel.wgsl}`;
}

export function specializationKey(kernel: KernelSource, defines: Defines): string {
  const parts = Object.keys(defines).sort().map((k) => `${k}=${defines[k]}`);
  return `${kernel.name}(${parts.join(',')})`;
}

export class PipelineCache {
  private readonly pipelines = new Map<string, GPUComputePipeline>();

  constructor(private readonly device: GPUDevice) {}

  get(kernel: KernelSource, defines: Defines): GPUComputePipeline {
    const key = specializationKey(kernel, defines);
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      const module = this.device.createShaderModule({ code: specialize(kernel, defines), label: key });
      pipeline = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: key });
      this.pipelines.set(key, pipeline);
    }
    return pipeline;
  }

  get size(): number {
    return this.pipelines.size;
  }
}

/** A kernel's source with its uniform struct; `name` labels pipelines and errors. */
export function defineKernel(name: string, wgsl: string, layout: { readonly wgsl: string }): KernelSource {
  return { name, wgsl, params: layout.wgsl };
}
