// Replay of a recorded forward. The first call of a forward for given inputs' shapes runs it
// as usual on the WebGpuRuntime while the runtime reports every dispatch (pipeline, packed
// uniforms, bindings, workgroups) and write it makes, with every tensor it allocates taken from
// a pool of the replay's own. Those buffers stay the replay's, so the recorded bindings stay
// valid: the uniforms (and the bytes the forward wrote) go into one buffer, each dispatch gets
// its bind group, once. A later call copies the inputs into the replay's input buffers, encodes
// the list (setPipeline, setBindGroup, dispatchWorkgroups: no bind group, no uniform packing, no
// shape check per dispatch; each write a buffer copy, so nothing is submitted in between) and
// copies the output out into a tensor of the runtime's pool.
//
// What a forward binds that is not its own (weights, a model's constant tables) stays where it
// is; the replay watches those buffers and drops itself when a tensor gives one up (weights
// released or reloaded, e.g. by setLoras), so a replay never binds a freed or reused buffer.
// Values that are not tensors (the UNet's time ids) are part of the key: another value records
// afresh. Values that change per call must be tensors (a denoising step's timestep and scheduler
// coefficients, pipeline/generation.ts).

import { keep, storageBytes, Tensor } from '../tensor.js';
import { BufferPool } from './buffer-pool.js';
import { type DispatchRecorder, UNIFORM_SLOT, type WebGpuRuntime } from './runtime.js';


/** One step of a replay: a prebuilt dispatch, or a copy out of the replay's constants buffer
 *  standing for a queue write the forward made (in order with the dispatches, so no flush). */
type Op =
  | { readonly pipeline: GPUComputePipeline; readonly bindGroup: GPUBindGroup; readonly x: number; readonly y: number; readonly z: number }
  | { readonly target: GPUBuffer; readonly targetOffset: number; readonly sourceOffset: number; readonly byteLength: number };

interface RecordedWrite {
  readonly buffer: GPUBuffer;
  readonly data: Uint8Array;
  readonly byteOffset: number;
}

interface RecordedDispatch {
  readonly pipeline: GPUComputePipeline;
  readonly uniforms: Uint8Array;
  readonly bindings: readonly GPUBufferBinding[];
  readonly workgroups: readonly [number, number, number];
}

/** Collects what the runtime reports during WebGpuRuntime.record(). */
class Recorder implements DispatchRecorder {
  readonly pool: ReplayPool;
  readonly steps: Array<RecordedDispatch | RecordedWrite> = [];
  readsBack = false;

  constructor(gpu: WebGpuRuntime) {
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.pool = new ReplayPool((size, label) => gpu.createBuffer({ size, usage, label: `replay: ${label}` }), gpu.device.limits.maxBufferSize);
  }

  dispatch(pipeline: GPUComputePipeline, uniforms: Uint8Array, bindings: readonly GPUBufferBinding[], workgroups: readonly [number, number, number]): void {
    this.steps.push({ pipeline, uniforms, bindings: bindings.map((b) => ({ ...b })), workgroups });
  }

  write(buffer: GPUBuffer, data: Uint8Array, byteOffset: number): void {
    this.steps.push({ buffer, data, byteOffset });
  }

  readBack(): void {
    this.readsBack = true;
  }
}

/** A pool that knows its idle buffers: after a recording, those are the forward's intermediates. */
class ReplayPool extends BufferPool {
  readonly idle = new Set<GPUBuffer>();

  override acquire(bytes: number, label: string): GPUBuffer {
    const buffer = super.acquire(bytes, label);
    this.idle.delete(buffer);
    return buffer;
  }

  override release(buffer: GPUBuffer): void {
    super.release(buffer);
    this.idle.add(buffer);
  }

  override trim(): void {
    super.trim();
    this.idle.clear();
  }
}

export class ForwardReplay {
  /** Dispatches per replay (writes not counted). */
  readonly dispatches: number;
  /** Per input: the held tensor last copied into it (its contents are still there), or null. */
  private readonly heldCopies: Array<Tensor | null> = [];
  private closed = false;
  private readonly unwatch: () => void;

  private constructor(
    readonly gpu: WebGpuRuntime,
    /** What the replay was recorded for (replayForward's key). */
    readonly key: string,
    private readonly pool: ReplayPool,
    private readonly inputs: readonly Tensor[],
    private readonly output: Tensor,
    private readonly ops: readonly Op[],
    /** The uniforms and the written bytes. */
    private readonly constants: GPUBuffer,
    /** Buffers the forward binds that are not the replay's own. */
    externals: ReadonlySet<GPUBuffer>,
  ) {
    this.dispatches = ops.filter((op) => 'bindGroup' in op).length;
    live.add(new WeakRef(this));
    // Weakly: the runtime's watchers must not keep a replay whose owner is gone.
    const self = new WeakRef(this);
    const unwatch = gpu.watchRetired((buffer) => {
      const replay = self.deref();
      if (!replay) unwatch();
      else if (externals.has(buffer)) replay.dispose();
    });
    this.unwatch = unwatch;
  }

  /**
   * Runs `forward` on copies of `inputs` (buffers of the replay's own), recording it; returns the
   * replay and the forward's output, copied into a tensor of the runtime's pool (the caller's).
   */
  static record(gpu: WebGpuRuntime, key: string, inputs: readonly Tensor[], held: ReadonlySet<Tensor>, forward: (inputs: readonly Tensor[]) => Tensor): { replay: ForwardReplay; output: Tensor } {
    const recorder = new Recorder(gpu);
    const owned: Tensor[] = [];
    try {
      const output = gpu.record(recorder, () => {
        // Copied before the forward's first dispatch; the copies are not part of the list.
        const copies = inputs.map((t) => keep(Tensor.empty(gpu, t.shape, t.dtype, 'replay input')));
        owned.push(...copies);
        copies.forEach((copy, i) => gpu.copy(inputs[i]!.buffer, copy.buffer, storageBytes(copy.shape, copy.dtype)));
        const out = keep(forward(copies));
        owned.push(out);
        return out;
      });
      if (recorder.readsBack) throw new Error('a forward recorded for replay cannot read back: its replays would not');
      const replay = ForwardReplay.finish(gpu, key, recorder, owned.slice(0, inputs.length), output);
      inputs.forEach((t, i) => (replay.heldCopies[i] = held.has(t) ? t : null));
      return { replay, output: replay.copyOut() };
    } catch (e) {
      for (const t of owned) t.release();
      gpu.flush();
      recorder.pool.trim();
      throw e;
    }
  }

  private static finish(gpu: WebGpuRuntime, key: string, recorder: Recorder, inputs: Tensor[], output: Tensor): ForwardReplay {
    const dispatches = recorder.steps.filter((s): s is RecordedDispatch => 'pipeline' in s);
    const writes = recorder.steps.filter((s): s is RecordedWrite => !('pipeline' in s));
    // Uniforms at 256-byte slots, then the written bytes (whole words) back to back.
    const constantsOffset = dispatches.length * UNIFORM_SLOT;
    const packed = new Uint8Array(Math.max(4, constantsOffset + writes.reduce((n, w) => n + w.data.byteLength, 0)));
    const constants = gpu.createBuffer({
      size: packed.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: 'replay constants',
    });
    // What the forward touches that is neither the replay's inputs and output nor an idle buffer
    // of its pool (an intermediate) is another's: a weight, or a table a model made on its first
    // forward and keeps. The replay watches those.
    const own = new Set([...inputs, output].map((t) => t.buffer));
    const externals = new Set<GPUBuffer>();
    const touch = (buffer: GPUBuffer): void => {
      if (!own.has(buffer) && !recorder.pool.idle.has(buffer)) externals.add(buffer);
    };
    let [slot, at] = [0, constantsOffset];
    const ops = recorder.steps.map((step): Op => {
      if (!('pipeline' in step)) {
        touch(step.buffer);
        packed.set(step.data, at);
        at += step.data.byteLength;
        return { target: step.buffer, targetOffset: step.byteOffset, sourceOffset: at - step.data.byteLength, byteLength: step.data.byteLength };
      }
      const offset = slot++ * UNIFORM_SLOT;
      packed.set(step.uniforms, offset);
      step.bindings.forEach((b) => touch(b.buffer));
      const bindGroup = gpu.createBindGroup({
        layout: step.pipeline.getBindGroupLayout(0),
        label: step.pipeline.label,
        entries: [{ binding: 0, resource: { buffer: constants, offset, size: step.uniforms.byteLength } }, ...step.bindings.map((resource, i) => ({ binding: i + 1, resource }))],
      });
      const [x, y, z] = step.workgroups;
      return { pipeline: step.pipeline, bindGroup, x, y, z };
    });
    gpu.write(constants, packed);
    return new ForwardReplay(gpu, key, recorder.pool, inputs, output, ops, constants, externals);
  }

  /** GPU memory it holds: its pool and its constants buffer. */
  get bytes(): number {
    const { liveBytes, pooledBytes } = this.pool.stats;
    return liveBytes + pooledBytes + this.constants.size;
  }

  /** Whether dispose() ran (by hand, or because a buffer it binds was given up). */
  get disposed(): boolean {
    return this.closed;
  }

  /** The forward on `inputs` (shaped as recorded), replayed; the output is the caller's. Of the
   *  `held` ones, only those that another tensor than last time stands for are copied in. */
  run(inputs: readonly Tensor[], held: ReadonlySet<Tensor>): Tensor {
    if (this.closed) throw new Error('ForwardReplay.run after dispose()');
    const gpu = this.gpu;
    gpu.throwIfFailed();
    inputs.forEach((t, i) => {
      if (this.heldCopies[i] === t) return;
      gpu.copy(t.buffer, this.inputs[i]!.buffer, storageBytes(t.shape, t.dtype));
      this.heldCopies[i] = held.has(t) ? t : null;
    });
    for (const op of this.ops) {
      if ('bindGroup' in op) gpu.encodeDispatch(op.pipeline, op.bindGroup, op.x, op.y, op.z);
      else gpu.copy(this.constants, op.target, op.byteLength, op.sourceOffset, op.targetOffset);
    }
    return this.copyOut();
  }

  private copyOut(): Tensor {
    const out = Tensor.empty(this.gpu, this.output.shape, this.output.dtype, 'replay output');
    this.gpu.copy(this.output.buffer, out.buffer, storageBytes(out.shape, out.dtype));
    return out;
  }

  /** Frees the replay's buffers (after submitting what may still use them). */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.unwatch();
    this.gpu.flush();
    for (const t of [...this.inputs, this.output]) t.release();
    this.pool.trim();
    this.constants.destroy();
  }
}

/** Each owner's latest replay (a model's forward at the last shape it ran at). */
const replays = new WeakMap<object, ForwardReplay>();
/** The replays not disposed, for the memory they hold; weakly, so an owner that is collected
 *  takes its replay with it. */
const live = new Set<WeakRef<ForwardReplay>>();

/** GPU memory the live replays on `gpu` hold: their pools (activations, inputs, output) and
 *  constants buffers, beside the runtime's own pool. */
export function replayBytes(gpu: WebGpuRuntime): number {
  let bytes = 0;
  for (const ref of live) {
    const r = ref.deref();
    if (!r || r.disposed) live.delete(ref);
    else if (r.gpu === gpu) bytes += r.bytes;
  }
  return bytes;
}

/** Disposes every live replay on `gpu` (a memory budget needs its buffers back); each owner
 *  records afresh at its next forward. */
export function dropReplays(gpu: WebGpuRuntime): void {
  for (const ref of live) {
    const r = ref.deref();
    if (r?.gpu === gpu) r.dispose();
  }
}

/**
 * `forward(inputs)` on `gpu`, replayed when `owner` (the model) recorded it last for inputs of the
 * same shapes and dtypes and the same other values, recorded (and run) otherwise; one replay per
 * owner, so a new size replaces the last. `inputs` may nest arrays, Maps (keys kept as they are)
 * and objects, plain or not (rebuilt from their own enumerable properties with the same
 * prototype, e.g. the UNet's cross-attention context); every tensor in it is a per-call input,
 * copied in, a tensor met twice copied once. The tensors in `held` (nested the same way) keep
 * their contents for as long as the caller passes them (a generation's prompt embeddings and
 * cross-attention context, made once for all its steps): each is copied in when it first takes
 * its place, not at every call. At real size the context is 70 tensors, 30 MB.
 */
export function replayForward<I>(gpu: WebGpuRuntime, owner: object, inputs: I, forward: (inputs: I) => Tensor, held?: unknown): Tensor {
  // Inside another forward being recorded, run as usual: that recording takes in these dispatches.
  if (gpu.recording) return forward(inputs);
  const tensors = new Map<Tensor, number>();
  const key = JSON.stringify(describe(inputs, tensors, new Set()));
  const heldTensors = new Map<Tensor, number>();
  describe(held, heldTensors, new Set());
  const heldSet = new Set(heldTensors.keys());
  const cached = replays.get(owner);
  if (cached && !cached.disposed && cached.gpu === gpu && cached.key === key) return cached.run([...tensors.keys()], heldSet);
  cached?.dispose();
  const { replay, output } = ForwardReplay.record(gpu, key, [...tensors.keys()], heldSet, (copies) => forward(substitute(inputs, (t) => copies[tensors.get(t)!]!) as I));
  replays.set(owner, replay);
  return output;
}

const identities = new WeakMap<object, number>();
let nextIdentity = 0;

/** An object as a key: by identity. */
function identity(value: unknown): unknown {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return value;
  if (!identities.has(value)) identities.set(value, nextIdentity++);
  return { object: identities.get(value) };
}

/** `value` as a key: tensors by their index in `tensors` (added in walk order), shape and dtype;
 *  typed arrays by their values; Map keys and functions by identity. */
function describe(value: unknown, tensors: Map<Tensor, number>, path: Set<object>): unknown {
  if (value instanceof Tensor) {
    if (!tensors.has(value)) tensors.set(value, tensors.size);
    return { tensor: tensors.get(value), shape: value.shape, dtype: value.dtype };
  }
  if (typeof value !== 'object' || value === null) return identity(value);
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>);
  if (path.has(value)) throw new Error('replayForward: the inputs refer to themselves');
  path.add(value);
  const walk = (v: unknown): unknown => describe(v, tensors, path);
  const described = Array.isArray(value)
    ? value.map(walk)
    : value instanceof Map
      ? { map: [...value].map(([k, v]) => [identity(k), walk(v)]) }
      : { class: isPlain(value) ? null : value.constructor?.name, fields: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)])) };
  path.delete(value);
  return described;
}

/** `value` with each tensor replaced by `copy(tensor)`, as describe() walked it. */
function substitute(value: unknown, copy: (t: Tensor) => Tensor): unknown {
  if (value instanceof Tensor) return copy(value);
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value;
  const walk = (v: unknown): unknown => substitute(v, copy);
  if (Array.isArray(value)) return value.map(walk);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [k, walk(v)]));
  const rebuilt = Object.create(Object.getPrototypeOf(value)) as Record<string, unknown>;
  for (const [k, v] of Object.entries(value)) rebuilt[k] = walk(v);
  return rebuilt;
}

function isPlain(value: object): boolean {
  return [Object.prototype, null].includes(Object.getPrototypeOf(value));
}
