// Kernel variants chosen per adapter. A launcher with several valid variants for a call (tile
// shapes, workgroup sizes, subgroups on/off) asks `gpu.tuning.choose(...)`: the measured choice
// for this adapter when `sdxl-turbo tune` stored one, else its own heuristic. Choices are keyed
// by the op, a hash of the kernel sources it chooses among and the call's shape signature, so
// an edited kernel misses its old measurements and falls back to the heuristic.

import type { Gpu } from './runtime.js';
import { kernelSourceHash, type KernelSource } from './pipeline-cache.js';

/** An op whose launcher offers variants: its name and the kernels its variants run. */
export interface TunableOp {
  readonly name: string;
  /** name@hash of the kernel sources: the prefix of every choice key of the op. */
  readonly id: string;
}

export function tunableOp(name: string, kernels: readonly KernelSource[]): TunableOp {
  return { name, id: `${name}@${kernels.map(kernelSourceHash).join('.')}` };
}

/** A call of a tunable op as `tune` sees it: its choices, and how to run it alone. */
export interface TunableCall<V extends string = string> {
  readonly op: TunableOp;
  /** The call's shape signature (dtype, sizes, flags): equal keys take the same variant. */
  readonly key: string;
  /** For people: e.g. "linear 4096×640→640 +b f16". */
  readonly label: string;
  /** The variants valid for this call, in the launcher's order. */
  readonly candidates: readonly V[];
  /** What the launcher picks without a measurement. */
  readonly heuristic: V;
  /** Inputs of the call's shapes on `gpu` (finite values), to run the call with each variant. */
  readonly prepare: (gpu: Gpu) => PreparedCall<V>;
}

export interface PreparedCall<V extends string = string> {
  /** Records the call with `variant` (nothing is submitted or awaited). */
  run(variant: V): void;
  /** Releases the inputs and outputs. */
  dispose(): void;
}

/** Stored choices: `${op.id}|${key}` → variant. */
export type TuningChoices = ReadonlyMap<string, string>;

export class Tuning {
  private choices: TuningChoices = new Map();
  private observer: ((call: TunableCall) => void) | null = null;

  /** `cpu`: the adapter computes on the CPU (src/gpu/software-adapter.ts), so the launchers'
   *  heuristics take the variants measured fastest on llvmpipe, not the ones made for GPUs. */
  constructor(readonly cpu = false) {}

  /** Replaces the choices in use (an empty map: every call takes its heuristic). */
  use(choices: TuningChoices): void {
    this.choices = choices;
  }

  get size(): number {
    return this.choices.size;
  }

  /** Reports every tunable call made until called with null (`tune` enumerates a run's calls). */
  observe(observer: ((call: TunableCall) => void) | null): void {
    this.observer = observer;
  }

  /** The variant for a call: the stored choice when it is one of `candidates`, else `heuristic`.
   *  `describe` is only called while observing. */
  choose<V extends string>(op: TunableOp, key: string, candidates: readonly V[], heuristic: V, describe: () => Pick<TunableCall<V>, 'label' | 'prepare'>): V {
    if (this.observer) this.observer({ op, key, candidates, heuristic, ...describe() } as unknown as TunableCall);
    const stored = this.choices.get(`${op.id}|${key}`);
    return stored !== undefined && (candidates as readonly string[]).includes(stored) ? (stored as V) : heuristic;
  }
}
