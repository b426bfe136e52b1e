// A GPU memory budget (PipelineOptions.maxMemory): which networks stay resident and how the VAE
// decode tiles, chosen so that every stage of a run fits, from the run's dry run (dry-run.ts):
// each network's weights as allocated and each forward's pooled activations. Stages start from
// an emptied pool when a budget is set (the pipeline trims it between stages), so a stage holds
// the resident weights plus that stage's activations; the few small tensors carried between
// stages (prompt embeddings, latents: under 1 MB at 512²) are not counted.
//
// Choices, cheapest first (the first under which every stage fits wins):
//   all              every network resident (nothing re-loaded)
//   release-encoders the text encoders freed after encoding, re-loaded for the next prompt
//   sequential       the UNet freed while the encoders run: each generation re-loads both
// and for each, the VAE decode untiled if it fits, else in the largest tiles that fit (the image
// then differs from the untiled one within the tiled-VAE tolerance). The VAE encode of
// image-to-image is not tiled (GroupNorm over tiles would change the latents the whole
// denoising builds on): its untiled peak must fit.

import { usage } from '../errors.js';
import { RecordingGpu } from '../gpu/recording.js';
import { describeTiling, planDecodeTiling } from '../models/decode-tiling.js';
import { declareWeights, ForwardMeter, type NetworkMemory } from '../models/memory-plan.js';
import { AutoencoderKL, parseVaeConfig, type VaeConfig, vaeDtype } from '../models/vae.js';
import { type DType, Tensor, tidy } from '../tensor.js';
import type { DryRun, PipelineConfigs, PlannedDevice } from './dry-run.js';
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
  readonly stage: 'encode-prompt' | 'encode-image' | 'denoise' | 'decode';
  /** Resident weights + the stage's pooled activations. */
  readonly bytes: number;
}

/** What the planner chose for a budget. */
export interface MemoryChoice {
  readonly maxMemory: number;
  readonly residency: Residency;
  /** AutoencoderKL.maxActivationBytes for the decode (null: the device's, i.e. untiled). */
  readonly decodeLimit: number | null;
  /** The decode's split, e.g. "untiled" or "2×2 tiles of 38×38 latent px …". */
  readonly decode: string;
  readonly stages: readonly StageMemory[];
  readonly peak: number;
}

export interface BudgetPlan {
  readonly choice: MemoryChoice;
  /** The run's dry run with the chosen decode tiling. */
  readonly dryRun: DryRun;
}

/** e.g. "5.47 GB". */
export function formatBytes(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} kB`;
}

/** One line: the choice and each stage's bytes against the budget. */
export function describeChoice(choice: MemoryChoice): string {
  const stages = choice.stages.map((s) => `${s.stage} ${formatBytes(s.bytes)}`).join(', ');
  return `memory budget ${formatBytes(choice.maxMemory)}: ${DESCRIBED[choice.residency]}, VAE decode ${choice.decode}; peak ${formatBytes(choice.peak)} (${stages})`;
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

/** The pooled activations of a decode of `latentShape` whose buffers are capped at `limit`
 *  by dry run; null when no tiling gets under the cap. */
function decodeActivations(config: VaeConfig, latentShape: readonly number[], dtype: DType, limit: number, limits: BufferLimits): number | null {
  const gpu = new RecordingGpu(limits);
  const vae = AutoencoderKL.create(config);
  declareWeights(gpu, vae.registry, dtype);
  vae.maxActivationBytes = limit;
  const meter = new ForwardMeter<'decode'>(gpu);
  try {
    tidy(() => meter.measure('decode', () => vae.decode(Tensor.empty(gpu, latentShape, dtype, 'latents'))));
  } catch (e) {
    if (e instanceof Error && /even \d+×\d+ latent tiles/.test(e.message)) return null;
    throw e;
  }
  return meter.forwards.get('decode')!.pooledBytes;
}

/**
 * The largest cap on the decode's buffers whose pooled activations fit `allowance` bytes, by
 * bisection over the cap (activations grow with the tiles the cap allows); null if none does.
 */
function decodeLimitFor(config: VaeConfig, latentShape: readonly number[], dtype: DType, untiledLargest: number, allowance: number, limits: BufferLimits): number | null {
  const fits = (limit: number): boolean => {
    const bytes = decodeActivations(config, latentShape, dtype, limit, limits);
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

/**
 * Plans `input`'s run for `maxMemory` bytes: the first residency (from `least`) under which every
 * stage fits, with the decode tiled as needed; a UsageError naming the best plan (each network's
 * weights and peak, the budget) when none fits. Nothing is allocated.
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
  const decodeRow = row('vae decode')!;
  const scale = 2 ** (vaeConfig.blockOutChannels.length - 1);
  const latentShape = [input.batch, vaeConfig.latentChannels, input.height / scale, input.width / scale];
  const vaeType = vaeDtype(vaeConfig, input.dtype);
  const choose = (residency: Residency, decodeBytes: number): StageMemory[] => {
    const resident = unet + vae + (residency === 'all' ? encoders : 0);
    return [
      { stage: 'encode-prompt', bytes: encoders + vae + (residency === 'sequential' ? 0 : unet) + activations('text_encoder') + activations('text_encoder_2') },
      ...(row('vae encode') ? [{ stage: 'encode-image' as const, bytes: resident + activations('vae encode') }] : []),
      { stage: 'denoise', bytes: resident + activations('unet') },
      { stage: 'decode', bytes: resident + decodeBytes },
    ];
  };
  let best: { residency: Residency; stages: StageMemory[]; tilesTried: boolean } | null = null;
  for (const residency of RESIDENCIES.slice(RESIDENCIES.indexOf(least))) {
    const untiled = choose(residency, decodeRow.pooledBytes);
    const others = untiled.filter((s) => s.stage !== 'decode');
    if (Math.max(...untiled.map((s) => s.bytes)) <= maxMemory) {
      return { choice: { maxMemory, residency, decodeLimit: device.vaeMaxActivationBytes ?? null, decode: decodeRow.note.replace(/^f(16|32), /, ''), stages: untiled, peak: Math.max(...untiled.map((s) => s.bytes)) }, dryRun: dry };
    }
    const othersFit = Math.max(...others.map((s) => s.bytes)) <= maxMemory;
    best = { residency, stages: untiled, tilesTried: othersFit };
    if (!othersFit) continue;
    const allowance = maxMemory - (unet + vae + (residency === 'all' ? encoders : 0));
    const limit = decodeLimitFor(vaeConfig, latentShape, vaeType, decodeRow.largestBuffer, allowance, device.limits);
    if (limit === null) continue;
    const tiled = await checkLimits(configs, input, { ...device, vaeMaxActivationBytes: limit });
    const stages = choose(residency, tiled.plan.find((r) => r.network === 'vae decode')!.pooledBytes);
    const tiling = planDecodeTiling(vaeConfig, latentShape, vaeType, limit, () => AutoencoderKL.create(vaeConfig), device.limits);
    const decode = tiling ? describeTiling(tiling, latentShape[2]!, latentShape[3]!) : 'untiled';
    return { choice: { maxMemory, residency, decodeLimit: limit, decode, stages, peak: Math.max(...stages.map((s) => s.bytes)) }, dryRun: tiled };
  }
  // The last residency tried is the leanest: name it, each stage, and each network's figures.
  const plan = best!;
  const networks = ['text_encoder', 'text_encoder_2', 'unet', 'vae decode', 'vae encode']
    .filter((n) => row(n))
    .map((n) => `${n} ${row(n)!.weightBytes === null ? '' : `${formatBytes(weights(n))} + `}${formatBytes(activations(n))}`);
  const stages = plan.stages.map((s) => `${s.stage} ${formatBytes(s.bytes)}${s.stage === 'decode' ? ` untiled${plan.tilesTried ? ', over the budget in any tiles' : ''}` : ''}`);
  return usage(
    `maxMemory ${formatBytes(maxMemory)} cannot hold a ${input.width}×${input.height} run: the leanest plan (${DESCRIBED[plan.residency]}) needs ${stages.join(', ')} ` +
      `(weights + activations: ${networks.join(', ')}); raise maxMemory or use a smaller size`,
    'maxMemory',
  );
}
