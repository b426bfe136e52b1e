// Live benchmark (Node): a scripted typist edits a prompt in a live session (pipeline.live(),
// src/pipeline/live.ts) and every keystroke's latency to the first frame that shows it is
// measured. `npm run bench:live -- --help`. Not part of `npm test`; results in BENCHMARKS.md.
//
// How it measures:
// - the script: the prompt typed character by character every --interval ms, then its last
//   word deleted and typed again (those prompts are in the session's cache: no encoders), then
//   a wait for the frame of the last keystroke. The same seed every frame.
// - a keystroke's latency: from the update() it went out with (or, throttled, from the keystroke
//   to the first update after it) to the first frame of that request or a later one.
// - each combination of the cancel policy (finishDecode: a frame whose denoising is done
//   finishes, or is cancelled too) and the sending (every keystroke, or at most one request
//   per measured frame time as the demo page sends) runs the whole script in its own session,
//   after one warm-up frame (pipelines compiled at load and by ready()).

import { writeFileSync } from 'node:fs';
import { openNodeGpu } from '../src/gpu/node.js';
import type { LiveFrame, LiveSession } from '../src/pipeline/live.js';
import { SdxlTurboPipeline } from '../src/pipeline/sdxl-turbo.js';
import type { DType } from '../src/tensor.js';
import { BadOption, LAYOUT, MODEL_OPTIONS, modelFs, modelOptions, openModelFolder, parseToolArgs, parseToolOptions, wholeOption } from './bench-model.js';
import { markdownTable, median } from './bench-report.js';

const DEFAULT_TEXT = 'a lighthouse on a rocky coast at sunset';

const USAGE = `npm run bench:live -- (--model DIR|ID|URL | --synthetic) [options]
  --model DIR|ID|URL   a diffusers SDXL(-Turbo) folder (e.g. test/fixtures/tiny-sdxl), a Hugging
                       Face repo id, a base URL, or a single-file checkpoint
  --synthetic          the real SDXL-Turbo architecture with synthetic real-size weights
                       (${LAYOUT}, made on the GPU while loading, ~7 GB of GPU memory)
  --width W --height H frame size (default 512×512; on a software adapter use small sizes)
  --steps N            denoising steps per frame (default 1)
  --dtype f16|f32      compute dtype (default f16 where the adapter has shader-f16)
  --variant fp16|fp32  which weight files of --model to read
  --text TEXT          the prompt typed (default "${DEFAULT_TEXT}")
  --interval MS        time between keystrokes (default 120: about 100 words a minute)
  --seed N             (default 0)
  --json OUT           also write the results as JSON
Run from the repository root.`;

interface Options {
  readonly model: string | null;
  readonly layout: string;
  readonly variant: 'fp16' | 'fp32' | undefined;
  readonly cpuSynthetic: boolean;
  readonly width: number;
  readonly height: number;
  readonly steps: number;
  readonly dtype: DType | undefined;
  readonly text: string;
  readonly interval: number;
  readonly seed: number;
  readonly json: string | null;
}


function parseOptions(argv: string[]): Options | null {
  const values = parseToolArgs(argv, {
    ...MODEL_OPTIONS,
    text: { type: 'string', default: DEFAULT_TEXT },
    interval: { type: 'string', default: '120' },
  });
  if (values.help) return null;
  const model = modelOptions(values);
  if (!/\S\s+\S/.test(values.text)) throw new BadOption(`--text must have at least two words (the script retypes the last), got "${values.text}"`);
  return { ...model, layout: LAYOUT, cpuSynthetic: false, text: values.text, interval: wholeOption('interval', values.interval, 1) };
}

/** The prompts after each keystroke: the text typed, its last word deleted, typed again. */
function editScript(text: string): string[] {
  const typed = Array.from(text, (_, i) => text.slice(0, i + 1));
  const cut = text.replace(/\S+$/, '').length;
  const deleted = Array.from({ length: text.length - cut }, (_, i) => text.slice(0, text.length - i - 1));
  return [...typed, ...deleted, ...typed.slice(cut)];
}

interface Keystroke {
  readonly at: number;
  /** The request it went out with. */
  sequence: number | null;
  latency: number | null;
}

interface Result {
  readonly policy: 'finish decode' | 'cancel decode';
  readonly sending: 'every keystroke' | 'throttled';
  readonly keystrokes: number;
  readonly requests: number;
  readonly frames: number;
  readonly dropped: number;
  readonly fps: number;
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
  /** Medians over the frames, ms. */
  readonly stages: { encode: number; denoise: number; decode: number };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** One session typing the script. */
async function typeScript(pipeline: SdxlTurboPipeline, o: Options, finishDecode: boolean, throttled: boolean): Promise<Result> {
  const session: LiveSession = pipeline.live({ width: o.width, height: o.height, steps: o.steps, seed: o.seed, finishDecode });
  await session.ready();
  const frames: LiveFrame[] = [];
  const keys: Keystroke[] = [];
  let arrived: () => void = () => {};
  let frameMs = 0;
  session.onFrame = (frame) => {
    const now = performance.now();
    frames.push(frame);
    frameMs = frameMs === 0 ? frame.timings.total - frame.timings.queue : 0.7 * frameMs + 0.3 * (frame.timings.total - frame.timings.queue);
    for (const k of keys) if (k.latency === null && k.sequence !== null && k.sequence <= frame.request) k.latency = now - k.at;
    arrived();
  };
  // One frame first: the session's first frame is no keystroke's.
  await new Promise<void>((resolve) => ((arrived = resolve), session.update({ prompt: '' })));
  const before = session.stats();
  frames.length = 0;
  let prompt = '';
  let lastSent = -Infinity;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let requests = 0;
  const send = (): void => {
    timer = null;
    lastSent = performance.now();
    const sequence = session.update({ prompt });
    requests++;
    for (const k of keys) k.sequence ??= sequence;
  };
  const script = editScript(o.text);
  const start = performance.now();
  for (const [i, text] of script.entries()) {
    await sleep(start + i * o.interval - performance.now());
    prompt = text;
    keys.push({ at: performance.now(), sequence: null, latency: null });
    // Throttled as the demo page: at most one request per measured frame time, the last one always.
    if (!throttled) send();
    else if (timer === null) {
      const wait = lastSent + frameMs - performance.now();
      if (wait <= 0) send();
      else timer = setTimeout(send, wait);
    }
  }
  while (keys.some((k) => k.latency === null)) await new Promise<void>((resolve) => (arrived = resolve));
  const stats = session.stats();
  await session.close();
  const latencies = keys.map((k) => k.latency!);
  return {
    policy: finishDecode ? 'finish decode' : 'cancel decode',
    sending: throttled ? 'throttled' : 'every keystroke',
    keystrokes: keys.length,
    requests,
    frames: stats.frames - before.frames,
    dropped: stats.dropped - before.dropped,
    // Frames delivered over the script's time (the first keystroke to the last frame).
    fps: (1000 * frames.length) / (performance.now() - start),
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    max: Math.max(...latencies),
    stages: {
      encode: median(frames.map((f) => f.timings.encode)),
      denoise: median(frames.map((f) => f.timings.denoise)),
      decode: median(frames.map((f) => f.timings.decode)),
    },
  };
}

async function main(argv: string[]): Promise<number> {
  const o = parseToolOptions('bench-live', USAGE, parseOptions, argv);
  if (typeof o === 'number') return o;
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const gpu = await openNodeGpu({ allowF16: o.dtype !== 'f32' });
  let pipeline: SdxlTurboPipeline | null = null;
  try {
    const model = await openModelFolder(o, await modelFs(o));
    const shape = { width: o.width, height: o.height, batch: 1, steps: o.steps, imageToImage: false };
    pipeline = await SdxlTurboPipeline.load(gpu, model.folder, { dtype: o.dtype }, false, { model: model.description, wrapPng: (bytes: Uint8Array) => bytes, run: shape });
    const script = editScript(o.text);
    console.log(`adapter: ${gpu.adapterName} (shader-f16: ${gpu.f16 ? 'yes' : 'no'})`);
    console.log(`model: ${model.description}; ${o.width}×${o.height}, ${o.steps} step(s), ${pipeline.dtype} (VAE f32)`);
    console.log(`script: ${script.length} keystrokes every ${o.interval} ms ("${o.text}" typed, its last word deleted and typed again)`);
    const results: Result[] = [];
    for (const throttled of [false, true]) {
      for (const finishDecode of [true, false]) {
        const r = await typeScript(pipeline, o, finishDecode, throttled);
        console.error(`  ${r.policy}, ${r.sending}: p50 ${r.p50.toFixed(0)} ms`);
        results.push(r);
      }
    }
    const ms = (x: number): string => x.toFixed(0);
    console.log(
      markdownTable(
        ['cancel policy', 'sending', 'keys', 'requests', 'frames', 'dropped', 'fps', 'latency p50 ms', 'p95 ms', 'max ms', 'encode / denoise / decode ms (median)'],
        results.map((r) => [r.policy, r.sending, String(r.keystrokes), String(r.requests), String(r.frames), String(r.dropped), r.fps.toFixed(2), ms(r.p50), ms(r.p95), ms(r.max), `${ms(r.stages.encode)} / ${ms(r.stages.denoise)} / ${ms(r.stages.decode)}`]),
        new Set([2, 3, 4, 5, 6, 7, 8, 9]),
      ),
    );
    if (o.json) writeFileSync(o.json, JSON.stringify({ adapter: gpu.adapterName, model: model.description, options: o, results }, null, 2));
    return 0;
  } finally {
    await pipeline?.dispose();
    gpu.dispose();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`bench-live: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  },
);
