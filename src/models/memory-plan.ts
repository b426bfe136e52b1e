// GPU memory of a generation, measured on its dry run (src/pipeline/dry-run.ts runs the real
// forwards on a RecordingGpu): each network's weights (its declared tensors, shape-only, as
// allocated) and each forward's activations as the real buffer pool holds them. Nothing here
// models a forward: what the plan says is what the forwards allocate.

import type { RecordingGpu } from '../gpu/recording.js';
import { Q8Tensor } from '../ops/quantize.js';
import { type DType, Tensor } from '../tensor.js';
import type { WeightRegistry } from './weights.js';

/** Gives every weight `registry` keeps on the GPU once loaded (derived ones in place of their
 *  parts) a shape-only tensor on `gpu` (`q8`: the Linear and conv weights 8-bit, at their Q8
 *  size); returns their bytes as allocated (exact buffers, outside the pool: weights never count
 *  as activations). */
export function declareWeights(gpu: RecordingGpu, registry: WeightRegistry, dtype: DType, q8 = false): number {
  let bytes = 0;
  for (const w of registry.resident()) {
    const label = `${registry.component}.${w.name}`;
    const tensor = q8 && w.quantizable ? Q8Tensor.empty(gpu, w.shape, label) : Tensor.empty(gpu, w.shape, dtype, label, true);
    bytes += tensor instanceof Tensor ? tensor.buffer.size : tensor.words.buffer.size;
    w.set(tensor);
  }
  return bytes;
}

/** One network's forward on the recording device; the largest figures over its calls. */
export interface ForwardMemory {
  /** The pool's peak (live + idle) over the forward from an emptied pool, inputs excluded,
   *  outputs included: the GPU memory its activations take. */
  readonly pooledBytes: number;
  /** The peak of live buffers alone: the least any allocator could need. */
  readonly liveBytes: number;
  /** The largest activation buffer (a pool size class): what must fit maxBufferSize. */
  readonly largestBuffer: number;
  /** The largest storage binding dispatched: what must fit maxStorageBufferBindingSize. */
  readonly largestBinding: number;
  /** Dispatches of one call. */
  readonly dispatches: number;
  /** Bytes the dispatches of one call bind, each distinct binding of a dispatch once: the
   *  memory traffic if every bound byte is read or written once (re-reads are not counted). */
  readonly boundBytes: number;
  readonly calls: number;
}

/**
 * Measures each forward of a dry run: the pool is emptied first (as if the forward ran alone),
 * and its peaks, largest buffer and binding and dispatches are taken over the call.
 */
export class ForwardMeter<N extends string> {
  readonly forwards = new Map<N, ForwardMemory>();
  /** The forward running now; after a forward threw, the one that failed. */
  current: N | null = null;

  constructor(private readonly gpu: RecordingGpu) {}

  measure<T>(name: N, forward: () => T): T {
    const { gpu } = this;
    const { pool } = gpu;
    gpu.trimPool();
    const base = pool.stats.liveBytes;
    pool.peakBytes = base;
    pool.peakLiveBytes = base;
    const outside = { buffer: gpu.largestBuffer, binding: gpu.largestBinding };
    gpu.largestBuffer = 0;
    gpu.largestBinding = 0;
    const firstDispatch = gpu.dispatches.length;
    this.current = name;
    const out = forward();
    this.current = null;
    const before = this.forwards.get(name);
    let boundBytes = 0;
    for (let i = firstDispatch; i < gpu.dispatches.length; i++) {
      // An absent operand's stand-in binds the same range as another operand: once.
      const distinct = new Map(gpu.dispatches[i]!.bindings.map((b) => [`${b.buffer}:${b.offset}:${b.size}`, b.size]));
      for (const size of distinct.values()) boundBytes += size;
    }
    this.forwards.set(name, {
      pooledBytes: Math.max(before?.pooledBytes ?? 0, pool.peakBytes - base),
      liveBytes: Math.max(before?.liveBytes ?? 0, pool.peakLiveBytes - base),
      largestBuffer: Math.max(before?.largestBuffer ?? 0, gpu.largestBuffer),
      largestBinding: Math.max(before?.largestBinding ?? 0, gpu.largestBinding),
      dispatches: Math.max(before?.dispatches ?? 0, gpu.dispatches.length - firstDispatch),
      boundBytes: Math.max(before?.boundBytes ?? 0, boundBytes),
      calls: (before?.calls ?? 0) + 1,
    });
    gpu.largestBuffer = Math.max(outside.buffer, gpu.largestBuffer);
    gpu.largestBinding = Math.max(outside.binding, gpu.largestBinding);
    return out;
  }
}

/** What a plan is of: the image size and batch, and the dtypes. */
export interface MemoryPlanOptions {
  readonly width: number;
  readonly height: number;
  readonly batch: number;
  /** Storage dtype of the text encoders and the UNet (the VAE's: vaeDtype, f32 for SDXL's). */
  readonly dtype: DType;
  /** Their Linear and conv weights 8-bit. */
  readonly weights?: 'q8' | 'float';
  /** AutoencoderKL.maxActivationBytes for the decode (default: the device's maxBufferSize). */
  readonly vaeMaxActivationBytes?: number;
  /** AutoencoderKL.maxEncodeActivationBytes for the encode (default: the same). */
  readonly vaeMaxEncodeActivationBytes?: number;
}

/** One row of the plan: a network's weights and its forward's figures. */
export interface NetworkMemory extends ForwardMemory {
  readonly network: string;
  /** GPU bytes of the weights; null where another row holds the same weights. */
  readonly weightBytes: number | null;
  readonly note: string;
}

const MB = 1e6;

/** A small text table: network, weights MB, activations MB (pooled and live); then each
 *  network's dispatches per call. */
export function formatMemoryPlan(plan: readonly NetworkMemory[], options: MemoryPlanOptions): string {
  const lines = [
    `GPU memory plan: ${options.width}×${options.height}, batch ${options.batch} (dry run of the forwards; the unet's figures are per step)`,
    `${'network'.padEnd(16)}${'weights MB'.padStart(12)}${'activations MB'.padStart(16)}${'(live MB)'.padStart(11)}  notes`,
  ];
  for (const r of plan) {
    const weights = r.weightBytes === null ? '(shared)' : (r.weightBytes / MB).toFixed(1);
    lines.push(`${r.network.padEnd(16)}${weights.padStart(12)}${(r.pooledBytes / MB).toFixed(1).padStart(16)}${(r.liveBytes / MB).toFixed(1).padStart(11)}  ${r.note}`);
  }
  // One pool serves every network: its buffers outlive each forward unless trimmed, so the
  // pipeline holds between the largest peak and the sum of the peaks.
  const weights = plan.reduce((sum, r) => sum + (r.weightBytes ?? 0), 0);
  const largest = Math.max(...plan.map((r) => r.pooledBytes));
  const all = plan.reduce((sum, r) => sum + r.pooledBytes, 0);
  lines.push(
    `${'all weights'.padEnd(16)}${(weights / MB).toFixed(1).padStart(12)}  + activations ${(largest / MB).toFixed(1)}–${(all / MB).toFixed(1)} MB (largest peak – sum of peaks) = ` +
      `${((weights + largest) / MB).toFixed(1)}–${((weights + all) / MB).toFixed(1)} MB`,
    `dispatches per call: ${plan.map((r) => `${r.network} ${r.dispatches}`).join(', ')}`,
    `MB bound per call (each dispatch's bindings once): ${plan.map((r) => `${r.network} ${(r.boundBytes / MB).toFixed(0)}`).join(', ')}`,
  );
  return lines.join('\n');
}
