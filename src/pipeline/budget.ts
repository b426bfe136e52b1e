// A GPU memory budget (PipelineOptions.maxMemory): which networks stay resident and how the VAE
// decode and encode tile, chosen so that every stage of a run fits, from the run's dry run
// (dry-run.ts): each network's weights as allocated and each forward's pooled activations.
// Stages start from an emptied pool when a budget is set (the pipeline trims it between stages),
// so a stage holds the resident weights plus that stage's activations, and the denoise and the
// decode also the prompts' cross-attention k|v (the UNet context, live to the end of the run);
// the few small tensors carried between stages (prompt embeddings, latents: under 1 MB at 512²)
// are not counted. A network's load holds, beside the weights already there, its own weights as
// they land plus one weight's transients (the parts a fused weight is built from, a staged cast,
// the floats a weight is quantized from: WeightRegistry.load destroys them as it goes), measured
// by running that load on a recording device: the 'load' stage is the pipeline's first load, and
// the encode-prompt stage also covers re-loading what the residency released (the encoders
// before encoding, the UNet after). LoRA merges at load are not counted (an f32 copy of a
// merged weight at a time).
//
// Choices, cheapest first (the first under which every stage fits wins):
//   all              every network resident (nothing re-loaded)
//   release-encoders the text encoders freed after encoding, re-loaded for the next prompt
//   sequential       the UNet freed while the encoders run: each generation re-loads both
// and for each, the VAE decode untiled if it fits, else in the largest tiles that fit (the image
// then differs from the untiled one within the tiled-VAE tolerance), and the same for the VAE
// encode of image-to-image (diffusers' tiled_encode: the latents then differ from the untiled
// ones by the tiles' own GroupNorm statistics, so it tiles only when the untiled encode cannot fit).

import { usage } from '../errors.js';
import { RecordingGpu } from '../gpu/recording.js';
import { UNIFORM_RING_BYTES, UNIFORM_SLOT } from '../gpu/runtime.js';
import { entryBytes, type TensorEntry, type TensorSource } from '../io/tensor-source.js';
import { CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig } from '../models/clip.js';
import { describeVaePass, type VaePass } from '../models/decode-tiling.js';
import { declareWeights, ForwardMeter, type NetworkMemory } from '../models/memory-plan.js';
import { AutoencoderKL, parseVaeConfig, type VaeConfig, vaeDtype } from '../models/vae.js';
import { parseUNetConfig, UNet2DConditionModel } from '../models/unet.js';
import type { WeightRegistry } from '../models/weights.js';
import { type DType, Tensor, tidy } from '../tensor.js';
import type { DryRun, LoadedNetwork, PipelineConfigs, PlannedDevice } from './dry-run.js';
import type { GenerationInput } from './generation.js';
import { type BufferLimits, checkLimits } from './preflight.js';

export type Residency = 'all' | 'release-encoders' | 'sequential';

const RESIDENCIES: readonly Residency[] = ['all', 'release-encoders', 'sequential'];

const DESCRIBED: Record<Residency, string> = {
  all: 'all networks resident',
  'release-encoders': 'text encoders released after encoding',
  sequential: 'text encoders released after encoding and the UNet while they run',
};

export interface StageMemory {
  readonly stage: 'load' | 'encode-prompt' | 'encode-image' | 'denoise' | 'decode';
  /** Resident weights + the stage's pooled activations, or what a load in it holds if more,
   *  + the runtime's uniform ring. */
  readonly bytes: number;
  /** What the plan holds as the stage begins (resident weights, the UNet context, the ring):
   *  `bytes` less this is what the stage adds. */
  readonly held: number;
}

/** What the planner chose for a budget. */
export interface MemoryChoice {
  readonly maxMemory: number;
  readonly residency: Residency;
  /** AutoencoderKL.maxActivationBytes for the decode (null: the device's, i.e. untiled). */
  readonly decodeLimit: number | null;
  /** The decode's split, e.g. "untiled" or "2×2 tiles of 38×38 latent px …". */
  readonly decode: string;
  /** AutoencoderKL.maxEncodeActivationBytes for image-to-image's encode (null: the device's). */
  readonly encodeLimit: number | null;
  /** The encode's split as `decode` says it; null for text-to-image. */
  readonly encode: string | null;
  readonly stages: readonly StageMemory[];
  readonly peak: number;
}

export interface BudgetPlan {
  readonly choice: MemoryChoice;
  /** The run's dry run with the chosen decode and encode tilings. */
  readonly dryRun: DryRun;
}

/** e.g. "5.47 GB". */
export function formatBytes(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} kB`;
}

/** One line: the choice and each stage's bytes against the budget. */
export function describeChoice(choice: MemoryChoice): string {
  const stages = choice.stages.map((s) => `${s.stage} ${formatBytes(s.bytes)}`).join(', ');
  const encode = choice.encode === null ? '' : `, VAE encode ${choice.encode}`;
  return `memory budget ${formatBytes(choice.maxMemory)}: ${DESCRIBED[choice.residency]}, VAE decode ${choice.decode}${encode}; peak ${formatBytes(choice.peak)} (${stages})`;
}

const SUFFIXES: Record<string, number> = { '': 1, B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };

/** "6GB", "6 GiB", "512MiB", "1.5e9", "6000000000" → bytes; anything else a UsageError naming `name`. */
export function parseByteSize(text: string, name: string): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(text);
  const bytes = m ? Math.floor(Number(m[1]) * SUFFIXES[(m[2] ?? '').toUpperCase()]!) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) usage(`${name} must be a size in bytes ≥ 1, optionally with a suffix (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 6GB or 512MiB; got "${text}"`, name);
  return bytes;
}

/** maxMemory as the library takes it: a whole number of bytes ≥ 1. */
export function checkMaxMemory(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) usage(`maxMemory must be a whole number of bytes ≥ 1, got ${JSON.stringify(value)}`, 'maxMemory');
  return value;
}

/** The pooled activations of a VAE `pass` of `latentShape` (the encode: of its image) whose
 *  buffers are capped at `limit`, by dry run; null when no tiling gets under the cap. */
function vaeActivations(pass: VaePass, config: VaeConfig, latentShape: readonly number[], dtype: DType, limit: number, limits: BufferLimits): number | null {
  const gpu = new RecordingGpu(limits);
  const vae = AutoencoderKL.create(config);
  declareWeights(gpu, vae.registry, dtype);
  vae.maxActivationBytes = limit;
  vae.maxEncodeActivationBytes = limit;
  const [batch, , h, w] = latentShape as [number, number, number, number];
  const input = pass === 'decode' ? Tensor.empty(gpu, latentShape, dtype, 'latents') : Tensor.empty(gpu, [batch, config.inChannels, h * vae.scale, w * vae.scale], dtype, 'image');
  const meter = new ForwardMeter<VaePass>(gpu);
  try {
    tidy(() => meter.measure(pass, () => (pass === 'decode' ? vae.decode(input) : vae.encode(input))));
  } catch (e) {
    if (e instanceof Error && /even \d+×\d+ latent tiles/.test(e.message)) return null;
    throw e;
  }
  return meter.forwards.get(pass)!.pooledBytes;
}

/**
 * The largest cap on a VAE pass's buffers whose pooled activations fit `allowance` bytes, by
 * bisection over the cap (activations grow with the tiles the cap allows); null if none does.
 */
function vaeLimitFor(pass: VaePass, config: VaeConfig, latentShape: readonly number[], dtype: DType, untiledLargest: number, allowance: number, limits: BufferLimits): number | null {
  const fits = (limit: number): boolean => {
    const bytes = vaeActivations(pass, config, latentShape, dtype, limit, limits);
    return bytes !== null && bytes <= allowance;
  };
  // The smallest tiles need some cap: double up to the first that fits (none: null).
  let [lo, hi] = [2 ** 10, untiledLargest]; // hi (untiled) does not fit
  while (lo < hi && !fits(lo)) lo *= 2;
  if (lo >= hi) return null;
  while (hi - lo > Math.max(2 ** 16, lo / 64)) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** A network's load on a recording device from an empty one: the most bytes it held at once,
 *  and what it holds once loaded (its weights). */
interface LoadMemory {
  readonly peak: number;
  readonly loaded: number;
}

/** Zero-valued stand-ins of `table`'s tensors, as a file would hold them (no table: each
 *  declared tensor in `dtype`), all views of one zeroed buffer: the recording device drops
 *  what is written, so nothing reads them. */
function zeroSource(registry: WeightRegistry, dtype: DType, table: ReadonlyMap<string, TensorEntry> | undefined): TensorSource {
  const entries = table ?? new Map([...registry.expected()].map(([name, shape]) => [name, { name, shape, format: dtype }]));
  const largest = Math.max(0, ...[...entries.values()].map(entryBytes)) + 2; // + the scales' alignment
  let zeros: ArrayBuffer | null = null;
  const view = <T>(make: (buffer: ArrayBuffer) => T): T => make((zeros ??= new ArrayBuffer(largest)));
  const entry = (name: string): TensorEntry => entries.get(name)!;
  const count = (name: string): number => entry(name).shape.reduce((a, d) => a * d, 1);
  return {
    description: `${registry.component} (dry run)`,
    entries,
    read: async (name) => ({ format: entry(name).format, data: view((b) => (entry(name).format === 'f32' ? new Float32Array(b, 0, count(name)) : new Uint16Array(b, 0, count(name)))) }),
    readQ8: async (name) => {
      const rows = entry(name).shape[0]!;
      // Its values, then its scales, within the entry's bytes (entryBytes).
      return view((b) => ({ values: new Int8Array(b, 0, count(name)), scales: new Uint16Array(b, count(name) + (count(name) % 2), rows * Math.ceil(count(name) / rows / 32)) }));
    },
  };
}

/** Measured loads by model (its UNet config object, or its UNet's weight table), then by
 *  measureLoads' other arguments: a load is the same at every size (under a second of dry run at
 *  real size, planned once per model). */
const measuredLoads = new WeakMap<object, Map<string, Promise<Record<LoadedNetwork, LoadMemory>>>>();

/** Each network's load (WeightRegistry.load itself, on a recording device shaped like `device`)
 *  from the weight files' tables; q8: the encoders' and UNet's Linear and conv weights
 *  quantized as they load. */
function measureLoads(configs: PipelineConfigs, device: PlannedDevice, dtype: DType, q8: boolean): Promise<Record<LoadedNetwork, LoadMemory>> {
  const model = (configs.weightTables?.unet ?? configs.unet) as object;
  const byArguments = measuredLoads.get(model) ?? new Map<string, Promise<Record<LoadedNetwork, LoadMemory>>>();
  measuredLoads.set(model, byArguments);
  const key = [dtype, q8, device.f16 ?? true, device.limits?.maxBufferSize, device.limits?.maxStorageBufferBindingSize].join();
  let loads = byArguments.get(key);
  if (!loads) byArguments.set(key, (loads = runLoads(configs, device, dtype, q8)));
  return loads;
}

async function runLoads(configs: PipelineConfigs, device: PlannedDevice, dtype: DType, q8: boolean): Promise<Record<LoadedNetwork, LoadMemory>> {
  const gpu = new RecordingGpu(device.limits, device.f16, device.subgroups, device.tuning);
  const vaeConfig = parseVaeConfig(configs.vae);
  const networks: Array<[LoadedNetwork, WeightRegistry, DType]> = [
    ['text_encoder', CLIPTextModel.create(parseCLIPTextConfig(configs.textEncoder, 'text_encoder/config.json')).registry, dtype],
    ['text_encoder_2', CLIPTextModelWithProjection.create(parseCLIPTextConfig(configs.textEncoder2, 'text_encoder_2/config.json')).registry, dtype],
    ['unet', UNet2DConditionModel.create(parseUNetConfig(configs.unet, 'unet/config.json')).registry, dtype],
    ['vae', AutoencoderKL.create(vaeConfig).registry, vaeDtype(vaeConfig, dtype)],
  ];
  const loads = {} as Record<LoadedNetwork, LoadMemory>;
  for (const [network, registry, networkDtype] of networks) {
    const before = gpu.allocated.live;
    gpu.allocated.restart();
    await registry.load(gpu, zeroSource(registry, networkDtype, configs.weightTables?.[network]), networkDtype, { quantize: q8 && network !== 'vae' });
    loads[network] = { peak: gpu.allocated.peak - before, loaded: gpu.allocated.live - before };
    registry.release();
  }
  return loads;
}

/** The most bytes loading `networks` in this order holds, beside `held` bytes already there. */
function loadBytes(loads: Record<LoadedNetwork, LoadMemory>, networks: readonly LoadedNetwork[], held = 0): number {
  let peak = 0;
  for (const n of networks) {
    peak = Math.max(peak, held + loads[n].peak);
    held += loads[n].loaded;
  }
  return peak;
}

/** The VAE stages and the plan's names for them. */
const VAE_STAGES = [
  { stage: 'decode', network: 'vae decode', pass: 'decode' },
  { stage: 'encode-image', network: 'vae encode', pass: 'encode' },
] as const;

/**
 * Plans `input`'s run for `maxMemory` bytes: the first residency (from `least`) under which every
 * stage fits, with the VAE decode and encode tiled as needed; a UsageError naming the best plan
 * (each network's weights and peak, the budget) when none fits. Nothing is allocated.
 */
export async function planBudget(
  configs: PipelineConfigs,
  input: GenerationInput,
  device: PlannedDevice & { limits: BufferLimits },
  maxMemory: number,
  least: Residency = 'all',
): Promise<BudgetPlan> {
  const dry = await checkLimits(configs, input, device);
  const row = (network: string): NetworkMemory | undefined => dry.plan.find((r) => r.network === network);
  const weights = (network: string): number => row(network)?.weightBytes ?? 0;
  const activations = (network: string): number => row(network)?.pooledBytes ?? 0;
  const encoders = weights('text_encoder') + weights('text_encoder_2');
  const [unet, vae] = [weights('unet'), weights('vae decode')];
  const vaeConfig = parseVaeConfig(configs.vae);
  const scale = 2 ** (vaeConfig.blockOutChannels.length - 1);
  const [h, w] = [input.height / scale, input.width / scale];
  // The decode's batch; the encode's one input image (the batch repeats its latents).
  const latentShapes = { decode: [input.batch, vaeConfig.latentChannels, h, w], encode: [1, vaeConfig.latentChannels, h, w] };
  const vaeType = vaeDtype(vaeConfig, input.dtype);
  const resident = (residency: Residency): number => unet + vae + (residency === 'all' ? encoders : 0);
  const loads = await measureLoads(configs, device, input.dtype, input.weights === 'q8');
  const context = activations('unet context');
  // The replayed denoising step (gpu/replay.ts) holds, beside the UNet's activations, a uniform
  // slot per dispatch and its own copy of each input: the context is the one that counts.
  const replayed = (row('unet')?.dispatches ?? 0) * UNIFORM_SLOT + context;
  const choose = (residency: Residency, vaeBytes: Record<VaePass, number>): StageMemory[] => {
    const kept = resident(residency);
    const stages: Array<Omit<StageMemory, 'held' | 'bytes'> & { held: number; adds: number }> = [
      // The pipeline's first load: the UNet waits for the first encoding when it never sits beside the encoders.
      { stage: 'load', held: 0, adds: loadBytes(loads, ['text_encoder', 'text_encoder_2', ...(residency === 'sequential' ? [] : ['unet' as const]), 'vae']) },
      {
        // A later generation begins it with what the last one kept (a sequential one: the UNet).
        stage: 'encode-prompt',
        held: kept,
        adds: Math.max(
          kept,
          encoders + vae + (residency === 'sequential' ? 0 : unet) + activations('text_encoder') + activations('text_encoder_2'),
          // Released encoders load again for the next prompt; a released UNet after encoding.
          residency === 'all' ? 0 : loadBytes(loads, ['text_encoder', 'text_encoder_2'], vae + (residency === 'sequential' ? 0 : unet)),
          residency === 'sequential' ? loadBytes(loads, ['unet'], vae) : 0,
        ) - kept,
      },
      ...(row('vae encode') ? [{ stage: 'encode-image' as const, held: kept, adds: vaeBytes.encode }] : []),
      // The prompts' cross-attention k|v (the 'unet context' row) stay live from before the
      // first step to the end of the run.
      { stage: 'denoise', held: kept, adds: context + activations('unet') + replayed },
      { stage: 'decode', held: kept + context, adds: vaeBytes.decode },
    ];
    return stages.map(({ stage, held, adds }) => ({ stage, held: held + UNIFORM_RING_BYTES, bytes: held + adds + UNIFORM_RING_BYTES }));
  };
  const untiledBytes = { decode: activations('vae decode'), encode: activations('vae encode') };
  const vaeStages = VAE_STAGES.filter((v) => row(v.network));
  const isVae = (stage: StageMemory['stage']): boolean => vaeStages.some((v) => v.stage === stage);
  let best: { residency: Residency; stages: StageMemory[]; untileable: Set<string> } | null = null;
  for (const residency of RESIDENCIES.slice(RESIDENCIES.indexOf(least))) {
    const untiled = choose(residency, untiledBytes);
    const peak = Math.max(...untiled.map((s) => s.bytes));
    best = { residency, stages: untiled, untileable: new Set() };
    if (Math.max(...untiled.filter((s) => !isVae(s.stage)).map((s) => s.bytes)) > maxMemory) continue;
    // Each VAE pass untiled when it fits beside what its stage holds besides (resident weights,
    // the carried UNet context), else under the largest cap on its buffers whose tiles fit (the
    // device's own caps when nothing tiles).
    const held = choose(residency, { decode: 0, encode: 0 });
    const caps = { decode: device.vaeMaxActivationBytes ?? null, encode: device.vaeMaxEncodeActivationBytes ?? null };
    if (peak > maxMemory) {
      for (const v of vaeStages) {
        const allowance = maxMemory - held.find((s) => s.stage === v.stage)!.bytes;
        if (untiledBytes[v.pass] <= allowance) continue;
        caps[v.pass] = vaeLimitFor(v.pass, vaeConfig, latentShapes[v.pass], vaeType, row(v.network)!.largestBuffer, allowance, device.limits);
        if (caps[v.pass] === null) best.untileable.add(v.stage);
      }
      if (best.untileable.size > 0) continue;
    }
    const planned = peak > maxMemory ? await checkLimits(configs, input, { ...device, vaeMaxActivationBytes: caps.decode, vaeMaxEncodeActivationBytes: caps.encode }) : dry;
    const pooled = (network: string): number => planned.plan.find((r) => r.network === network)?.pooledBytes ?? 0;
    const stages = choose(residency, { decode: pooled('vae decode'), encode: pooled('vae encode') });
    const split = (pass: VaePass): string => describeVaePass(pass, vaeConfig, latentShapes[pass], vaeType, caps[pass] ?? device.limits.maxBufferSize, () => AutoencoderKL.create(vaeConfig), device.limits);
    const choice: MemoryChoice = {
      maxMemory,
      residency,
      decodeLimit: caps.decode,
      decode: split('decode'),
      encodeLimit: caps.encode,
      encode: row('vae encode') ? split('encode') : null,
      stages,
      peak: Math.max(...stages.map((s) => s.bytes)),
    };
    return { choice, dryRun: planned };
  }
  // The last residency tried is the leanest: name it, each stage, and each network's figures.
  const plan = best!;
  const networks = ['text_encoder', 'text_encoder_2', 'unet', 'vae decode', 'vae encode']
    .filter((n) => row(n))
    .map((n) => `${n} ${row(n)!.weightBytes === null ? '' : `${formatBytes(weights(n))} + `}${formatBytes(activations(n))}`);
  const stages = plan.stages.map((s) => `${s.stage} ${formatBytes(s.bytes)}${isVae(s.stage) ? ` untiled${plan.untileable.has(s.stage) ? ', over the budget in any tiles' : ''}` : ''}`);
  return usage(
    `maxMemory ${formatBytes(maxMemory)} cannot hold a ${input.width}×${input.height} run: the leanest plan (${DESCRIBED[plan.residency]}) needs ${stages.join(', ')} ` +
      `(weights + activations: ${networks.join(', ')}); raise maxMemory, ${input.weights === 'q8' ? '' : 'use 8-bit weights (weights: \'q8\', --weights q8), '}or use a smaller size`,
    'maxMemory',
  );
}
