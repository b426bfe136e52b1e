// The GPU bundle's summary (tools/gpu-bundle.mjs, run.sh): reads what the run wrote (gpu-info,
// bench-kernels, bench-pipeline and torch-baseline JSON; any may be missing) and writes one
// Markdown summary with the ratios that come from one run on one card:
// - kernels: our Σ calls × median against PyTorch's over the cases both timed (same shapes);
// - UNet step: our profiled step's GPU time (every kernel of the step) and the denoise stage's
//   wall clock per step, against PyTorch's eager sequence of the step's Linear / Conv2d /
//   attention calls (and its CUDA-graph replay), which leaves out the norms and elementwise ops.
// Usage: bench-summary --dir OUTDIR [--info FILE] [--out FILE]; prints the summary.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { markdownTable } from './bench-report.js';

interface KernelRow { kernel: string; shape: string; calls: number; medianMs: number; gflops: number | null }
interface Kernels { adapter: string; dtype: string; ceiling: { gflops: number; copyGBps: number; matmulSize: number }; cases: KernelRow[]; sumCallsTimesMedianMs: number; sumCallsTimesTunedMedianMs?: number; casesRun: number; skipped: string[] }
interface TorchRow { kernel: string; shape: string; calls: number; medianMs: number; backend: string; tflops: number | null }
interface Torch { info: Record<string, unknown>; peaks: Record<string, { tflops: number; size: number }>; cases: TorchRow[]; sumCallsTimesMedianMs: number; sequence: { calls: number; eagerMedianMs: number; graphMedianMs: number | null } }
interface Pipeline {
  storedTuningChoices?: number | null;
  adapter: { name: string };
  model: string;
  run: { width: number; height: number; steps: number; dtype: string };
  load: { ms: number; generateSyntheticMs: number | null; warmUp?: boolean };
  stages: Record<string, { medianMs: number; warmupMs: number }>;
  denoisePerStepMedianMs: number | null;
  totalMs: { median: number; warmup: number };
  profile: { unetStepMs: number; segments: Array<{ segment: string; ms: number; dispatches: number }> } | null;
}

function read<T>(path: string): T | null {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : null;
}

const f = (x: number | null | undefined, digits = 3): string => {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  if (x === 0) return '0';
  const d = Math.max(0, Math.min(6, digits - 1 - Math.floor(Math.log10(Math.abs(x)))));
  return x.toFixed(d);
};

function main(): void {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, info: { type: 'string' }, out: { type: 'string' } } });
  if (!values.dir) throw new Error('bench-summary: --dir OUTDIR is required');
  const dir = values.dir;
  const info = values.info ? read<Record<string, unknown>>(values.info) : null;
  const kernels = read<Kernels>(join(dir, 'bench-kernels.json'));
  const pipeline = read<Pipeline>(join(dir, 'bench-pipeline.json'));
  const torch = read<Torch>(join(dir, 'torch-baseline.json'));

  const lines: string[] = ['# GPU bundle summary', ''];
  const adapter = info ? [info.description, info.vendor, info.architecture, info.device].filter(Boolean).join(' / ') : (kernels?.adapter ?? pipeline?.adapter.name ?? 'no adapter');
  lines.push(`- date: ${new Date().toISOString()}`);
  lines.push(`- WebGPU adapter: ${adapter}`);
  if (torch) lines.push(`- PyTorch: ${String(torch.info.torch)} on ${String(torch.info.name ?? torch.info.device)} (CUDA ${String(torch.info.cuda ?? '-')}, cuDNN ${String(torch.info.cudnn ?? '-')})`);
  lines.push('');

  const rows: string[][] = [];
  if (kernels) {
    rows.push(['our matmul ceiling (best tile, square)', `${f(kernels.ceiling.gflops)} GFLOP/s ${kernels.dtype} (${kernels.ceiling.matmulSize}³)`]);
    rows.push(['our copy bandwidth (read + write)', `${f(kernels.ceiling.copyGBps)} GB/s`]);
    rows.push([`our Σ calls × median, ${kernels.casesRun} kernel cases (bench-kernels)`, `${f(kernels.sumCallsTimesMedianMs)} ms`]);
    if (kernels.sumCallsTimesTunedMedianMs !== undefined) rows.push(['… with the tuned variants (bench-kernels --tune)', `${f(kernels.sumCallsTimesTunedMedianMs)} ms`]);
  }
  if (pipeline) {
    const r = pipeline.run;
    rows.push(['pipeline run', `${pipeline.model}; ${r.width}×${r.height}, ${r.steps} step(s), ${r.dtype}`]);
    rows.push(['load (synthetic weights generated: of it)', `${f(pipeline.load.ms / 1000)} s (${f((pipeline.load.generateSyntheticMs ?? 0) / 1000)} s)`]);
    if (pipeline.denoisePerStepMedianMs !== null) rows.push(['UNet step, wall (denoise / steps, median)', `${f(pipeline.denoisePerStepMedianMs)} ms`]);
    if (pipeline.profile) rows.push(['UNet step, GPU (profiled run, all its kernels)', `${f(pipeline.profile.unetStepMs)} ms`]);
    const decode = pipeline.stages.decode;
    if (decode) rows.push(['VAE decode, wall (median; f32)', `${f(decode.medianMs)} ms`]);
    const decodeGpu = pipeline.profile?.segments.find((s) => s.segment === 'decode');
    if (decodeGpu) rows.push(['VAE decode, GPU (profiled run)', `${f(decodeGpu.ms)} ms (${decodeGpu.dispatches} dispatches)`]);
    rows.push([`generate(), wall: median / first run after load${pipeline.load.warmUp ? ' (load ran it once: --warm-up)' : ''}`, `${f(pipeline.totalMs.median)} / ${f(pipeline.totalMs.warmup)} ms`]);
  }
  if (torch) {
    for (const [name, p] of Object.entries(torch.peaks)) rows.push([`PyTorch matmul ${name} (${p.size}³${name === 'fp32' ? ', TF32 off' : ''})`, `${f(p.tflops)} TFLOP/s`]);
    rows.push([`PyTorch Σ calls × median, ${torch.cases.length} cases`, `${f(torch.sumCallsTimesMedianMs)} ms`]);
    rows.push([`PyTorch sequence of the ${torch.sequence.calls} calls, eager`, `${f(torch.sequence.eagerMedianMs)} ms`]);
    if (torch.sequence.graphMedianMs !== null) rows.push(['the same sequence as one CUDA graph', `${f(torch.sequence.graphMedianMs)} ms`]);
  } else {
    rows.push(['PyTorch baseline', 'not run (see the log: no python3 with torch and CUDA)']);
  }
  if (kernels && torch) {
    const theirs = new Map(torch.cases.map((c) => [`${c.kernel.replace(/\[.*/, '')} ${c.shape}`, c]));
    let ours = 0;
    let them = 0;
    let n = 0;
    for (const c of kernels.cases) {
      const t = theirs.get(`${c.kernel.replace(/\[.*/, '')} ${c.shape}`);
      if (!t) continue;
      ours += c.calls * c.medianMs;
      them += t.calls * t.medianMs;
      n++;
    }
    if (n > 0) rows.push([`ratio ours / PyTorch, Σ calls × median over the ${n} cases both timed`, `${f(ours / them)}× (${f(ours)} / ${f(them)} ms)`]);
  }
  if (pipeline?.profile && torch) {
    const full = torch.sequence.calls === 934 ? '' : ` (PyTorch ran ${torch.sequence.calls} of the 934 calls: --small)`;
    rows.push([`ratio our UNet step GPU / PyTorch's eager sequence${full}`, `${f(pipeline.profile.unetStepMs / torch.sequence.eagerMedianMs)}×`]);
    if (pipeline.denoisePerStepMedianMs !== null) rows.push(['ratio our UNet step wall / PyTorch\'s eager sequence', `${f(pipeline.denoisePerStepMedianMs / torch.sequence.eagerMedianMs)}×`]);
    if (pipeline.run.width !== 512 || pipeline.run.height !== 512) rows.push(['note', `the pipeline ran at ${pipeline.run.width}×${pipeline.run.height}, the call list is of 512²: the step ratios compare different work`]);
  }
  lines.push(markdownTable(['what', 'value'], rows, new Set()));

  if (kernels && torch) {
    const theirs = new Map(torch.cases.map((c) => [`${c.kernel.replace(/\[.*/, '')} ${c.shape}`, c]));
    const joined = kernels.cases
      .map((c) => ({ c, t: theirs.get(`${c.kernel.replace(/\[.*/, '')} ${c.shape}`) }))
      .filter((x) => x.t)
      .sort((a, b) => b.c.calls * b.c.medianMs - a.c.calls * a.c.medianMs)
      .slice(0, 15)
      .map(({ c, t }) => [c.kernel, c.shape, String(c.calls), f(c.medianMs * 1000), f(t!.medianMs * 1000), f(c.medianMs / t!.medianMs), t!.backend]);
    lines.push('', 'Per shape, the 15 costliest of ours (calls × median):', '');
    lines.push(markdownTable(['kernel', 'shape', 'calls', 'ours µs', 'PyTorch µs', 'ours / PyTorch', 'PyTorch op'], joined, new Set([2, 3, 4, 5])));
  }
  const tuning = [
    pipeline && (pipeline.storedTuningChoices ? `bench-pipeline ran the ${pipeline.storedTuningChoices} kernel variants \`sdxl-turbo tune\` stored for this adapter` : 'bench-pipeline ran the heuristic kernel variants (no stored tuning: see the log\'s tune step)'),
    kernels && kernels.sumCallsTimesTunedMedianMs !== undefined && 'bench-kernels shows the heuristic and the tuned variant per shape',
  ].filter(Boolean);
  if (tuning.length) lines.push('', `Tuning: ${tuning.join('; ')}.`);
  const text = `${lines.join('\n')}\n`;
  if (values.out) writeFileSync(values.out, text);
  console.log(text);
}

main();
