// Compute pipelines cached by kernel name + specialization, never by shape: shapes are
// uniforms, so a new resolution reuses every compiled pipeline.
//
// Specialization is a tiny preprocessor over the kernel's WGSL:
// - each define (the kernel's fixed `constants`, then the dispatch's `defines`) becomes a
//   declaration prepended to the source: string → `alias NAME = value;` (dtype), integer →
//   `const NAME: u32`, boolean → `const NAME: bool`. An alias to f16 also prepends `enable f16;`,
//   SUBGROUPS = true `enable subgroups;` (the launcher sets it from `gpu.subgroups`), and
//   SUBGROUP_MATRIX = true `enable chromium_experimental_subgroup_matrix;`.
// - `struct Params` is generated from the kernel's uniform layout.
// - a line `//!include NAME` is replaced by the shared snippet kernels/include/NAME.wgsl
//   (each at most once per kernel); with SUBGROUPS = true, NAME-subgroups.wgsl where one exists.

import attentionLoad from '../../kernels/include/attention-load.wgsl';
import conv2dLane from '../../kernels/include/conv2d-lane.wgsl';
import conv2dLaneSubgroups from '../../kernels/include/conv2d-lane-subgroups.wgsl';
import f16Bits from '../../kernels/include/f16-bits.wgsl';
import gelu from '../../kernels/include/gelu.wgsl';
import grid from '../../kernels/include/grid.wgsl';
import matmulBindings from '../../kernels/include/matmul-bindings.wgsl';
import matmulLane from '../../kernels/include/matmul-lane.wgsl';
import matmulLaneSubgroups from '../../kernels/include/matmul-lane-subgroups.wgsl';
import q8 from '../../kernels/include/q8.wgsl';
import reduce from '../../kernels/include/reduce.wgsl';
import reduceSubgroups from '../../kernels/include/reduce-subgroups.wgsl';
import type { UniformLayout } from './uniforms.js';

export type Defines = Readonly<Record<string, string | number | boolean>>;

/** WGSL shared by several kernels, by the name `//!include` gives. */
const INCLUDES: Readonly<Record<string, string>> = {
  'attention-load': attentionLoad,
  'conv2d-lane': conv2dLane,
  'conv2d-lane-subgroups': conv2dLaneSubgroups,
  'f16-bits': f16Bits,
  gelu,
  grid,
  'matmul-bindings': matmulBindings,
  'matmul-lane': matmulLane,
  'matmul-lane-subgroups': matmulLaneSubgroups,
  q8,
  reduce,
  'reduce-subgroups': reduceSubgroups,
};

/** A kernel: its WGSL, its uniform layout and the constants it shares with its launcher. */
export interface KernelSource<K extends string = string> {
  /** Kernel file name, e.g. `matmul`. Used in labels and error messages. */
  readonly name: string;
  readonly source: string;
  /** The `params` uniform: packed by the runtime, declared to WGSL as `struct Params`. */
  readonly layout: UniformLayout<K>;
  /** Defines every specialization gets: numbers both sides use (tile sizes, workgroup size). */
  readonly constants: Defines;
}

/** Defines a kernel once: dispatches take its layout from here, so they cannot disagree. */
export function defineKernel<K extends string>(kernel: {
  name: string;
  source: string;
  layout: UniformLayout<K>;
  constants?: Defines;
}): KernelSource<K> {
  return { ...kernel, constants: kernel.constants ?? {} };
}

export function specialize(kernel: KernelSource, defines: Defines): string {
  const clash = Object.keys(defines).find((name) => name in kernel.constants);
  if (clash) throw new Error(`${kernel.name}: define ${clash} is one of the kernel's constants`);
  const all = { ...kernel.constants, ...defines };
  const lines: string[] = [];
  if (Object.values(all).includes('f16')) lines.push('enable f16;');
  if (all.SUBGROUPS === true) lines.push('enable subgroups;');
  if (all.SUBGROUP_MATRIX === true) lines.push('enable chromium_experimental_subgroup_matrix;');
  for (const [name, value] of Object.entries(all)) {
    if (typeof value === 'string') lines.push(`alias ${name} = ${value};`);
    else if (typeof value === 'boolean') lines.push(`const ${name}: bool = ${value};`);
    else if (Number.isInteger(value) && value >= 0) lines.push(`const ${name}: u32 = ${value}u;`);
    else throw new Error(`${kernel.name}: define ${name}=${value} must be a dtype, bool or non-negative integer`);
  }
  return `${lines.join('\n')}\n${kernel.layout.wgsl}\n${resolveIncludes(kernel.name, kernel.source, all.SUBGROUPS === true)}`;
}

function resolveIncludes(kernel: string, source: string, subgroups: boolean): string {
  const seen = new Set<string>();
  return source.replace(/^\/\/!include (\S+)[^\n]*$/gm, (_, name: string) => {
    const text = (subgroups ? INCLUDES[`${name}-subgroups`] : undefined) ?? INCLUDES[name];
    if (text === undefined) throw new Error(`${kernel}: no shared WGSL named ${name} (have ${Object.keys(INCLUDES).join(', ')})`);
    if (seen.has(name)) throw new Error(`${kernel}: ${name} included twice`);
    seen.add(name);
    return text;
  });
}

/** A short hash (FNV-1a, 32 bits, hex) of the kernel's WGSL with every shared snippet it
 *  includes and its constants: what a stored tuning choice was measured on. */
export function kernelSourceHash(kernel: KernelSource): string {
  const names = [...kernel.source.matchAll(/^\/\/!include (\S+)/gm)].map((m) => m[1]!);
  const text = [kernel.source, JSON.stringify(kernel.constants), ...names.flatMap((n) => [INCLUDES[n] ?? '', INCLUDES[`${n}-subgroups`] ?? ''])].join('\0');
  return fnv1a(text);
}

/** FNV-1a (32 bits, 8 hex digits) of `text`'s UTF-16 code units: a short stable name, not a checksum. */
export function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

export function specializationKey(kernel: KernelSource, defines: Defines): string {
  const parts = Object.keys(defines).sort().map((k) => `${k}=${defines[k]}`);
  return `${kernel.name}(${parts.join(',')})`;
}

/** One pipeline a run needs: a kernel and the defines of its dispatches. */
export interface Specialization {
  readonly kernel: KernelSource;
  readonly defines: Defines;
}

export class PipelineCache {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  /** Pipelines created by get() (synchronously): what a warm-up by compile() avoids. */
  createdSync = 0;

  constructor(private readonly device: GPUDevice) {}

  get(kernel: KernelSource, defines: Defines): GPUComputePipeline {
    const key = specializationKey(kernel, defines);
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      const module = this.device.createShaderModule({ code: specialize(kernel, defines), label: key });
      pipeline = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: key });
      this.pipelines.set(key, pipeline);
      this.createdSync++;
    }
    return pipeline;
  }

  /**
   * Creates every pipeline of `specializations` not cached yet with createComputePipelineAsync,
   * all in parallel, so later get() calls find them (no compile stall at dispatch). Resolves with
   * the count created; rejects with the first failure, labelled kernel(specialization) as get()'s.
   * `onCompiled(done, total)` follows the missing ones as they finish.
   */
  async compile(specializations: Iterable<Specialization>, onCompiled?: (done: number, total: number) => void): Promise<number> {
    const missing = new Map<string, Specialization>();
    for (const s of specializations) {
      const key = specializationKey(s.kernel, s.defines);
      if (!this.pipelines.has(key)) missing.set(key, s);
    }
    let done = 0;
    const results = await Promise.allSettled(
      [...missing].map(async ([key, { kernel, defines }]) => {
        try {
          const module = this.device.createShaderModule({ code: specialize(kernel, defines), label: key });
          const pipeline = await this.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: key });
          if (!this.pipelines.has(key)) this.pipelines.set(key, pipeline);
        } catch (e) {
          throw new Error(`${key}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        } finally {
          onCompiled?.(++done, missing.size);
        }
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return missing.size;
  }

  get size(): number {
    return this.pipelines.size;
  }
}
