// Node-only: `sdxl-turbo tune --model M --width W --height H` measures every variant of each
// distinct tunable kernel call of a generation of that size on this GPU (src/pipeline/tune.ts)
// and adds the fastest to this adapter's table (src/node/tuning-store.ts), which generate and
// serve then use (docs/TUNING.md). Only the model's configs are read: no weight is loaded.

import { usage } from '../errors.js';
import { openNodeGpu } from '../gpu/node.js';
import type { Gpu } from '../gpu/runtime.js';
import { describeAdapter, saveTuningTable } from '../gpu/tuning-table.js';
import { isQuantized } from '../io/q8-source.js';
import { readConfigs } from '../pipeline/preflight.js';
import { formatTuneResult, tune } from '../pipeline/tune.js';
import { type CliIo, flagError, integer, loadArgs, parse } from '../cli.js';
import { tokenizerFiles } from './model-source.js';
import { nodeTuningStore } from './tuning-store.js';

export const TUNE_HELP = `sdxl-turbo tune --model MODEL [--width W] [--height H] [options]

Measures, on this GPU, every valid variant (tile shape, workgroup size, …) of each distinct
kernel call a W×H generation makes, and stores the fastest for this adapter in
$SDXL_TURBO_TUNING_DIR, else \${XDG_CACHE_HOME:-~/.cache}/sdxl-turbo/tuning/ (tuning another size
adds to the table). generate and serve use the stored choices (--no-tune: not). Reads the
model's configs only (a folder of configs will do), no weights. See docs/TUNING.md.

  -m, --model MODEL     as generate's (a diffusers folder, repo id, URL or single file)
  --config DIR, --revision REV: as generate's (the VAE's calls are the model's VAE's)
  -W, --width W         image size (default 512×512), multiples of 8
  -H, --height H
  --batch N             images per run (default 1)
  --dtype f16|f32       compute precision (default f16 where the adapter has shader-f16)
  --weights q8          the 8-bit weight kernels (a quantized folder: anyway)
  --img2img             also the VAE encode of image-to-image
  --budget S            seconds of timed runs per call, all its variants together (default 2;
                        every variant is timed at least once)
  --reps N              timed runs per variant at most (default 5; the median is compared)
  --filter TEXT         only the calls whose label (as the table prints it) contains TEXT
  --time-limit S        start measuring no call after S seconds: the calls measured by then
                        are stored, the rest keep their heuristic (default: no limit)
  --tuning-dir DIR      where the table is stored (default above)
`;

function tuneOptions() {
  return {
    model: { type: 'string', short: 'm' },
    config: { type: 'string' },
    revision: { type: 'string' },
    dtype: { type: 'string' },
    weights: { type: 'string' },
    width: { type: 'string', short: 'W' },
    height: { type: 'string', short: 'H' },
    batch: { type: 'string' },
    img2img: { type: 'boolean' },
    budget: { type: 'string' },
    reps: { type: 'string' },
    filter: { type: 'string' },
    'time-limit': { type: 'string' },
    'tuning-dir': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  } as const;
}

export async function tuneCommand(argv: string[], io: CliIo): Promise<void> {
  const v = parse(tuneOptions(), argv);
  if (v.help) return io.out(TUNE_HELP);
  const a = loadArgs(v);
  const batch = integer('--batch', v.batch) ?? 1;
  if (batch < 1) usage(`--batch must be at least 1, got ${batch}`);
  const reps = integer('--reps', v.reps) ?? 5;
  if (reps < 1) usage(`--reps must be at least 1, got ${reps}`);
  const budget = v.budget === undefined ? 2 : Number(v.budget);
  if (v.budget?.trim() === '' || !(budget >= 0) || !Number.isFinite(budget)) usage(`--budget must be a number of seconds ≥ 0, got "${v.budget}"`);
  const timeLimit = v['time-limit'] === undefined ? undefined : Number(v['time-limit']);
  if (timeLimit !== undefined && (v['time-limit']?.trim() === '' || !(timeLimit > 0) || !Number.isFinite(timeLimit))) usage(`--time-limit must be a number of seconds > 0, got "${v['time-limit']}"`);
  const width = integer('--width', v.width) ?? 512;
  const height = integer('--height', v.height) ?? 512;
  let gpu: Gpu | null = null;
  try {
    const fs = await tokenizerFiles(a.model, a.config, a.revision === undefined ? {} : { revision: a.revision });
    const configs = await readConfigs(fs);
    const quantized = isQuantized(configs.unet as Record<string, unknown>, `${fs.description}/unet/config.json`);
    gpu = await openNodeGpu({ allowF16: a.dtype !== 'f32' });
    const weights = a.weights ?? (quantized ? 'q8' : undefined);
    const result = await tune(gpu, configs, {
      width,
      height,
      batch,
      ...(a.dtype ? { dtype: a.dtype } : {}),
      ...(weights ? { weights } : {}),
      imageToImage: v.img2img === true,
      budgetMs: budget * 1000,
      reps,
      ...(v.filter !== undefined ? { filter: v.filter } : {}),
      ...(timeLimit !== undefined ? { timeLimitMs: timeLimit * 1000 } : {}),
      onProgress: (p) => {
        if (io.progress.isTTY && p.done < p.total) io.progress.write(`\rtune: call ${p.done + 1}/${p.total}: ${p.label}\x1b[K`);
      },
    });
    if (io.progress.isTTY) io.progress.write('\r\x1b[K');
    io.out(`adapter: ${describeAdapter(gpu.adapter)}`);
    io.out(`${width}×${height}${batch > 1 ? ` × ${batch}` : ''}, ${a.dtype ?? (gpu.f16 ? 'f16' : 'f32')}${weights ? ', 8-bit weights' : ''}${v.img2img ? ', image-to-image' : ''}: ${result.calls.length + result.unmeasured} distinct tunable call(s)`);
    for (const line of formatTuneResult(result)) io.out(line);
    const measured = Object.keys(result.table.entries).length;
    const { where, table } = await saveTuningTable(nodeTuningStore(a.tuningDir), result.table);
    io.out(`stored ${measured} choice(s) in ${where} (${Object.keys(table.entries).length} in all)`);
  } catch (e) {
    throw flagError(e, undefined);
  } finally {
    gpu?.dispose();
  }
}
