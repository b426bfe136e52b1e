// Checks of one generation that need the model's configs (and for the buffers the device's
// limits) but no weights, so a run that cannot work fails before anything is uploaded. Both
// come from a dry run of the generation itself (dry-run.ts): checkRun — the configs parse, the
// random tensors supplied by name are ones the run draws, with its shapes; planRun — every
// buffer and binding the run makes fits the adapter's limits.

import { usage } from '../errors.js';
import { BufferTooLargeError } from '../gpu/buffer-pool.js';
import type { ModelFolder, ModelFs } from '../io/model-folder.js';
import { parseCLIPTextConfig } from '../models/clip.js';
import type { MemoryPlanOptions } from '../models/memory-plan.js';
import { parseUNetConfig } from '../models/unet.js';
import { parseVaeConfig } from '../models/vae.js';
import { type DType, formatShape, numel } from '../tensor.js';
import { type Draw, type DryRun, dryRun, DryRunError, type PipelineConfigs, type PlannedDevice, type RunShape, shapeInput, UNBOUNDED } from './dry-run.js';
import { type MemoryChoice, planBudget } from './budget.js';
import type { GenerationInput } from './generation.js';

export type { RunShape } from './dry-run.js';

/** The configs of a model folder, each checked with a message naming its file. */
export function folderConfigs(folder: ModelFolder): PipelineConfigs {
  const where = (component: string): string => `${folder.description}/${component}/config.json`;
  const configs = {
    textEncoder: folder.config('text_encoder'),
    textEncoder2: folder.config('text_encoder_2'),
    unet: folder.config('unet'),
    vae: folder.config('vae'),
    scheduler: folder.config('scheduler'),
    weightTables: Object.fromEntries((['text_encoder', 'text_encoder_2', 'unet', 'vae'] as const).map((c) => [c, folder.weights(c).entries])),
  };
  checkConfigs(configs, where);
  return configs;
}

function checkConfigs(configs: PipelineConfigs, where: (component: string) => string): void {
  parseCLIPTextConfig(configs.textEncoder, where('text_encoder'));
  parseCLIPTextConfig(configs.textEncoder2, where('text_encoder_2'));
  parseUNetConfig(configs.unet, where('unet'));
  parseVaeConfig(configs.vae, where('vae'));
}

/** The five configs of a diffusers folder's files, read and checked as folderConfigs does; no
 *  weight file is opened (a folder of configs only will do). */
export async function readConfigs(fs: ModelFs): Promise<PipelineConfigs> {
  const json = async (path: string): Promise<unknown> => {
    const text = (await fs.readText(path)) ?? usage(`${fs.description}/${path}: missing`);
    try {
      return JSON.parse(text);
    } catch (e) {
      usage(`${fs.description}/${path}: invalid JSON (${(e as Error).message})`);
    }
  };
  const configs = {
    textEncoder: await json('text_encoder/config.json'),
    textEncoder2: await json('text_encoder_2/config.json'),
    unet: await json('unet/config.json'),
    vae: await json('vae/config.json'),
    scheduler: await json('scheduler/scheduler_config.json'),
  };
  checkConfigs(configs, (component) => `${fs.description}/${component}/config.json`);
  return configs;
}

/** `inputs` (random tensors by name, see GenerationOptions.inputs) against the run's draws;
 *  `where` names the inputs' source in messages. */
export function checkInputs(draws: readonly Draw[], inputs: ReadonlyMap<string, Float32Array>, where: string): void {
  const shapes = new Map(draws.map((d) => [d.name, d.shape]));
  for (const [name, data] of inputs) {
    const shape = shapes.get(name);
    if (!shape) usage(`${where}: ${name} is not drawn by this run (it draws ${[...shapes.keys()].join(', ')})`);
    if (data.length !== numel(shape)) usage(`${where}: ${name} has ${data.length} values, expected ${numel(shape)} for shape ${formatShape(shape)}`);
  }
}

/**
 * The run against the model: its configs, and `inputs` against what the run draws. Any size
 * of multiples of 8 (checkSize) suits the UNet, as in diffusers: it rounds odd latent sides up
 * on the way down and meets each skip's size on the way up.
 */
export async function checkRun(folder: ModelFolder, run: RunShape, inputs: ReadonlyMap<string, Float32Array> | undefined, where: string): Promise<void> {
  const configs = folderConfigs(folder);
  if (!inputs) return;
  // The draws do not depend on the device: plan for one without limits.
  const { draws } = await dryRun(configs, shapeInput(configs, run, 'f32'), { limits: UNBOUNDED });
  checkInputs(draws, inputs, where);
}

export interface RunMemory {
  readonly plan: DryRun['plan'];
  readonly options: MemoryPlanOptions;
  readonly dryRun: DryRun;
  /** The budget's choice, when planned for one. */
  readonly choice: MemoryChoice | null;
}

/** The device limits a run's buffers must fit. */
export type BufferLimits = Pick<GPUSupportedLimits, 'maxBufferSize' | 'maxStorageBufferBindingSize'>;

/**
 * Dry-runs `input`'s generation on a device like `device` (its limits, its f16; decode tiles as
 * the VAE picks them: under its maxActivationBytes, by default the device's maxBufferSize): a
 * UsageError if a network needs a buffer over maxBufferSize or a binding over
 * maxStorageBufferBindingSize that it cannot split.
 */
export async function checkLimits(configs: PipelineConfigs, input: GenerationInput, device: PlannedDevice & { limits: BufferLimits }): Promise<DryRun> {
  const size = `${input.width}×${input.height}${input.batch > 1 ? ` × ${input.batch} images` : ''}`;
  const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;
  const { maxBufferSize, maxStorageBufferBindingSize } = device.limits;
  const tooLarge = (what: string): never => usage(`${size} is too large for this device: ${what}; use a smaller size or fewer images`);
  let run: DryRun;
  try {
    run = await dryRun(configs, input, device);
  } catch (e) {
    if (!(e instanceof DryRunError)) throw e;
    const network = e.network ?? 'pipeline';
    if (e.cause instanceof BufferTooLargeError) tooLarge(`the ${network} needs a ${mb(e.cause.bytes)} buffer, over the adapter's maxBufferSize of ${mb(maxBufferSize)}`);
    // An op that cannot split a binding under the limit says so by the limit's name.
    if (/maxStorageBufferBindingSize|binding limit|-byte bindings/.test(e.message)) {
      tooLarge(`the ${network} binds more than the adapter's maxStorageBufferBindingSize of ${mb(maxStorageBufferBindingSize)} (${e.message})`);
    }
    throw e.cause;
  }
  // The ops check their bindings against the limit; a binding over it is an op's mistake,
  // caught here before the device would reject it.
  const bindings = [...run.plan.map((r) => ({ network: r.network as string, bytes: r.largestBinding })), { network: 'pipeline', bytes: run.largestBinding }];
  for (const b of bindings) {
    if (b.bytes > maxStorageBufferBindingSize) tooLarge(`the ${b.network} binds ${mb(b.bytes)}, over the adapter's maxStorageBufferBindingSize of ${mb(maxStorageBufferBindingSize)}`);
  }
  return run;
}

/** A budget to plan for (see budget.ts): `maxMemory` bytes, the text encoders released at least
 *  when `releaseEncoders`. */
export interface BudgetOptions {
  readonly maxMemory?: number;
  readonly releaseEncoders?: boolean;
}

/** checkLimits for `run`'s shapes with weights in `dtype`, from the model folder, and with a
 *  `maxMemory` the budget's choice (a UsageError when none fits). Run checkRun first. */
export async function planRun(folder: ModelFolder, run: RunShape, dtype: DType, limits: BufferLimits, budget: BudgetOptions = {}): Promise<RunMemory> {
  const configs = folderConfigs(folder);
  const options: MemoryPlanOptions = { width: run.width, height: run.height, batch: run.batch, dtype, ...(run.weights ? { weights: run.weights } : {}) };
  const input = shapeInput(configs, run, dtype);
  if (budget.maxMemory === undefined) {
    const dry = await checkLimits(configs, input, { limits });
    return { plan: dry.plan, options, dryRun: dry, choice: null };
  }
  const { choice, dryRun: dry } = await planBudget(configs, input, { limits }, budget.maxMemory, budget.releaseEncoders ? 'release-encoders' : 'all');
  const caps = { ...(choice.decodeLimit === null ? {} : { vaeMaxActivationBytes: choice.decodeLimit }), ...(choice.encodeLimit === null ? {} : { vaeMaxEncodeActivationBytes: choice.encodeLimit }) };
  return { plan: dry.plan, options: { ...options, ...caps }, dryRun: dry, choice };
}
