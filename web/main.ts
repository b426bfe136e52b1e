// The demo page: one form, one pipeline kept between runs (loaded again only when the model
// source, precision, weights, scheduler or configs change; LoRA changes go through setLoras), a progress
// bar per stage, and every failure shown as a message with what to try. Plain DOM.
// body[data-state] (idle, busy, done, error, cancelled) lets the browser test wait for the outcome.

import {
  type BrowserLoadOptions,
  cachedQ8Size,
  clearModelCache,
  clearQ8Cache,
  decodeImage,
  type GenerateOptions,
  type GenerateResult,
  loadPipeline,
  type LoraOption,
  type ModelSource,
  NoAdapterError,
  type Pipeline,
  type ProgressEvent,
  UsageError,
} from '../src/browser.js';
import './memory.js';
import { setupLive } from './live.js';


const $ = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page lacks #${id}`);
  return element as T;
};

const form = {
  source: $<HTMLInputElement>('source'),
  folder: $<HTMLInputElement>('folder'),
  checkpoint: $<HTMLInputElement>('checkpoint'),
  config: $<HTMLInputElement>('config'),
  precision: $<HTMLSelectElement>('precision'),
  weights: $<HTMLSelectElement>('weights'),
  scheduler: $<HTMLSelectElement>('scheduler'),
  timestepSpacing: $<HTMLSelectElement>('timestep-spacing'),
  loras: $<HTMLInputElement>('loras'),
  loraScales: $('lora-scales'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  negativePrompt: $<HTMLTextAreaElement>('negative-prompt'),
  guidanceScale: $<HTMLInputElement>('guidance-scale'),
  steps: $<HTMLInputElement>('steps'),
  seed: $<HTMLInputElement>('seed'),
  width: $<HTMLInputElement>('width'),
  height: $<HTMLInputElement>('height'),
  image: $<HTMLInputElement>('image'),
  strength: $<HTMLInputElement>('strength'),
  generate: $<HTMLButtonElement>('generate'),
  cancel: $<HTMLButtonElement>('cancel'),
};
const gpuInfo = $('gpu-info');
const errorBox = $('error');
const canvas = $<HTMLCanvasElement>('canvas');
const download = $<HTMLAnchorElement>('download');

type Row = 'download' | 'load' | 'encode' | 'denoise' | 'decode';
const ROW_LABELS: Record<Row, string> = { download: 'Download', load: 'Load weights', encode: 'Encode', denoise: 'Denoise', decode: 'Decode' };
const ROW_OF: Record<ProgressEvent['stage'], Row> = { download: 'download', load: 'load', compile: 'load', 'encode-prompt': 'encode', 'encode-image': 'encode', denoise: 'denoise', decode: 'decode' };

const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
const megabytes = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

/** One row per stage: a bar, what is done, and the time since the stage's first event. */
class ProgressTable {
  private readonly rows = new Map<Row, { bar: HTMLProgressElement; text: HTMLTableCellElement; started: number | null }>();

  constructor(body: HTMLTableSectionElement) {
    for (const [row, label] of Object.entries(ROW_LABELS) as Array<[Row, string]>) {
      const tr = body.insertRow();
      tr.insertCell().textContent = label;
      const bar = tr.insertCell().appendChild(document.createElement('progress'));
      this.rows.set(row, { bar, text: tr.insertCell(), started: null });
    }
    this.reset();
  }

  reset(): void {
    for (const r of this.rows.values()) {
      r.bar.max = 1;
      r.bar.value = 0;
      r.text.textContent = '';
      r.started = null;
    }
  }

  update(row: Row, done: number, total: number, detail = `${done}/${total}`): void {
    const r = this.rows.get(row)!;
    r.started ??= performance.now();
    r.bar.max = Math.max(total, 1);
    r.bar.value = done;
    r.text.textContent = `${detail} · ${seconds(performance.now() - r.started)}`;
  }

  /** Marks a stage complete: `ms` if known, else the time since its first event. */
  finish(row: Row, detail: string, ms?: number): void {
    const r = this.rows.get(row)!;
    r.bar.max = 1;
    r.bar.value = 1;
    const elapsed = ms ?? (r.started === null ? null : performance.now() - r.started);
    r.text.textContent = elapsed === null ? detail : `${detail} · ${seconds(elapsed)}`;
  }
}

const progress = new ProgressTable($<HTMLTableElement>('progress').tBodies[0]!);
let loaded: { key: string; loras: string; pipeline: Pipeline } | null = null;
let running: AbortController | null = null;

function setState(state: 'idle' | 'busy' | 'done' | 'error' | 'cancelled'): void {
  document.body.dataset.state = state;
  form.generate.disabled = state === 'busy';
  form.cancel.disabled = state !== 'busy';
}

/** The model source: the picked single file or folder if any, else the text field. */
function modelSource(): { source: ModelSource; key: string } {
  const checkpoint = form.checkpoint.files?.[0];
  // A picked .safetensors file is a single-file checkpoint.
  if (checkpoint) return { source: checkpoint, key: `file:${checkpoint.name}:${checkpoint.size}:${checkpoint.lastModified}` };
  const files = form.folder.files;
  if (files && files.length > 0) {
    const first = files[0]!.webkitRelativePath.split('/')[0] ?? '';
    return { source: files, key: `folder:${first}:${files.length}` };
  }
  const text = form.source.value.trim() || form.source.placeholder;
  return { source: text, key: text };
}

/** The picked LoRA files with the scale typed beside each, and a key that changes with them. */
function loraChoice(): { loras: LoraOption[]; key: string } {
  const files = Array.from(form.loras.files ?? []);
  const scales = Array.from(form.loraScales.querySelectorAll('input'));
  const loras = files.map((source, i) => ({ source, scale: readNumber(scales[i]!, `LoRA ${source.name} scale`) ?? 1 }));
  return { loras, key: loras.map((l) => `${l.source.name}:${l.source.size}:${l.source.lastModified}@${l.scale}`).join('|') };
}

/** One scale input per picked LoRA file (default 1). */
function showLoraScales(): void {
  form.loraScales.replaceChildren(
    ...Array.from(form.loras.files ?? []).map((file) => {
      const label = document.createElement('label');
      const input = Object.assign(document.createElement('input'), { type: 'number', step: '0.05', value: '1', className: 'lora-scale' });
      label.append(`${file.name} scale`, input);
      return label;
    }),
  );
}

/** The options left at "the model's" are not passed, so the library's defaults apply. */
function loadOptions(): BrowserLoadOptions {
  const { scheduler, timestepSpacing, config, weights } = form;
  return {
    ...(weights.value === 'q8' ? { weights: 'q8' as const } : {}),
    ...(form.checkpoint.files?.[0] && config.value.trim() !== '' ? { config: config.value.trim() } : {}),
    ...(scheduler.value !== '' ? { scheduler: scheduler.value as BrowserLoadOptions['scheduler'] } : {}),
    ...(timestepSpacing.value !== '' ? { timestepSpacing: timestepSpacing.value as BrowserLoadOptions['timestepSpacing'] } : {}),
  };
}

async function ensurePipeline(signal: AbortSignal): Promise<Pipeline> {
  const { source, key: sourceKey } = modelSource();
  const dtype = form.precision.value === 'f32' ? 'f32' : undefined;
  const extra = loadOptions();
  const lora = loraChoice();
  // 8-bit weights read from the browser's cache cannot take LoRAs (setLoras): LoRAs or none
  // with q8 are two loads (with LoRAs, quantized at load with them merged).
  const key = `${sourceKey}|${dtype ?? 'auto'}|${JSON.stringify(extra)}${extra.weights === 'q8' && lora.loras.length > 0 ? '|loras' : ''}`;
  if (loaded?.key === key) {
    progress.finish('download', 'not needed');
    if (loaded.loras !== lora.key) {
      // LoRA changes re-merge the weights without reading the model again.
      progress.update('load', 0, 1, 'applying LoRA');
      await loaded.pipeline.setLoras(lora.loras);
      loaded = { ...loaded, loras: lora.key };
      progress.finish('load', 'LoRA applied');
    } else {
      progress.finish('load', 'already loaded');
    }
    return loaded.pipeline;
  }
  const previous = loaded;
  loaded = null;
  await previous?.pipeline.dispose();
  let downloaded = false;
  const options: BrowserLoadOptions = {
    ...extra,
    ...(lora.loras.length > 0 ? { loras: lora.loras } : {}),
    dtype,
    signal,
    onProgress: (e) => {
      if (e.stage === 'download') downloaded = true;
      if (e.stage === 'download' || e.stage === 'load') {
        progress.update(ROW_OF[e.stage], e.done, e.total, `${e.stage === 'download' ? e.file : e.component}: ${megabytes(e.done)} of ${megabytes(e.total)}`);
      }
    },
  };
  const q8Before = await cachedQ8Size(source, options);
  const pipeline = await loadPipeline(source, options);
  const q8After = await cachedQ8Size(source, options);
  progress.finish('download', downloaded ? 'downloaded' : typeof source === 'string' ? 'cached in this browser' : 'local files');
  showQ8Cache(options, q8Before, q8After);
  progress.finish('load', 'loaded');
  loaded = { key, loras: lora.key, pipeline };
  const { gpu } = pipeline;
  gpuInfo.textContent = `Adapter: ${gpu.adapterName} · compute ${pipeline.dtype}${
    gpu.f16 ? (pipeline.dtype === 'f32' ? ' (chosen)' : ' (shader-f16)') : ' — f32: this browser/adapter lacks shader-f16'
  } · VAE f32`;
  return pipeline;
}

/** Whether this load's 8-bit weights came from the browser's cache, were kept in it, or neither. */
function showQ8Cache(options: BrowserLoadOptions, before: number | null, after: number | null): void {
  const line = $('q8-cache');
  line.hidden = options.weights !== 'q8';
  if (before !== null) line.textContent = `8-bit weights: read from this browser's cache (${megabytes(before)}), not quantized again`;
  else if (after !== null) line.textContent = `8-bit weights: quantized once and kept in this browser (${megabytes(after)}); the next 8-bit load reads them`;
  else line.textContent = '8-bit weights: quantized at load, not kept (a local model, LoRAs, or no storage: see the console)';
  line.dataset.q8Cache = before !== null ? 'used' : after !== null ? 'made' : 'none';
}

function readNumber(input: HTMLInputElement, name: string): number | undefined {
  if (input.value.trim() === '') return undefined;
  const value = Number(input.value);
  if (!Number.isFinite(value)) throw new UsageError(`${name}: ${JSON.stringify(input.value)} is not a number`);
  return value;
}

async function generate(): Promise<void> {
  const controller = new AbortController();
  running = controller;
  setState('busy');
  errorBox.hidden = true;
  progress.reset();
  const started = performance.now();
  try {
    const file = form.image.files?.[0];
    const image = file ? await decodeImage(file) : null;
    const pipeline = await ensurePipeline(controller.signal);
    controller.signal.throwIfAborted();
    const guidanceScale = readNumber(form.guidanceScale, 'guidance scale');
    const negativePrompt = form.negativePrompt.value;
    const options: GenerateOptions = {
      // Left out at their defaults (no negative prompt, guidance 0).
      ...(negativePrompt !== '' ? { negativePrompt } : {}),
      ...(guidanceScale ? { guidanceScale } : {}),
      prompt: form.prompt.value,
      steps: readNumber(form.steps, 'steps'),
      seed: readNumber(form.seed, 'seed'),
      width: readNumber(form.width, 'width'),
      height: readNumber(form.height, 'height'),
      signal: controller.signal,
      onProgress: (e: ProgressEvent) => progress.update(ROW_OF[e.stage], e.done, e.total),
    };
    const result = image
      ? await pipeline.imageToImage({ ...options, image, strength: readNumber(form.strength, 'strength') })
      : await pipeline.generate(options);
    showResult(result, performance.now() - started);
    setState('done');
  } catch (e) {
    showError(e);
  } finally {
    running = null;
  }
}

function showResult(result: GenerateResult, ms: number): void {
  const image = result.images[0]!;
  // NaN or an overflow anywhere ends as one flat colour: say so rather than show it.
  if (image.data.every((v) => v === image.data[0])) {
    throw new Error(`the image came out flat (every value ${image.data[0]}): the computation overflowed or produced NaN. Try precision f32.`);
  }
  const t = result.timings;
  progress.finish('encode', 'done', (t['encode-prompt'] ?? 0) + (t['encode-image'] ?? 0));
  progress.finish('denoise', 'done', t.denoise);
  progress.finish('decode', 'done', t.decode);
  canvas.width = image.width;
  canvas.height = image.height;
  const rgba = image.rgba();
  canvas.getContext('2d')!.putImageData(new ImageData(rgba.data as Uint8ClampedArray<ArrayBuffer>, rgba.width, rgba.height), 0, 0);
  $('result-info').textContent = `${image.width}×${image.height}, seed ${result.seed} · ${seconds(ms)} in all`;
  // The PNG carries the prompt, seed, steps and size in its text chunks.
  void image.png().then((blob) => {
    URL.revokeObjectURL(download.href);
    download.href = URL.createObjectURL(blob);
    download.download = `sdxl-turbo-${result.seed}.png`;
  });
  $('result').hidden = false;
}

/** A message for the person at the page: what went wrong and what to try. */
function explain(e: unknown): string {
  const error = e instanceof Error ? e : new Error(String(e));
  const message = error.message;
  if (error instanceof NoAdapterError) {
    return `WebGPU is not available. ${message}\nTry a current Chrome or Edge with hardware acceleration on (chrome://gpu shows WebGPU's status); on Linux, start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan.`;
  }
  if (/device (was )?lost/i.test(message)) {
    return `The GPU device was lost: ${message}\nThe driver reset or the GPU ran out of memory. Reload the page, then try a smaller width/height or close other GPU-heavy tabs.`;
  }
  if (/out of memory|OutOfMemory|allocat/i.test(message)) {
    return `The GPU ran out of memory: ${message}\nTry a smaller width/height (512×512 is SDXL-Turbo's size), precision auto (f16 halves the weights), or close other tabs.`;
  }
  if (/network error|HTTP \d{3}|not found/i.test(message)) {
    return `Could not read the model: ${message}\nCheck the source (a diffusers folder URL ending in /, or an org/name Hugging Face id); a server on another origin must allow CORS and Range requests.`;
  }
  if (error instanceof UsageError) return `Please check the inputs: ${message}`;
  return `Something went wrong: ${message}\nThe browser console has the details.`;
}

function showMessage(text: string, notice = false): void {
  errorBox.textContent = text;
  errorBox.classList.toggle('notice', notice);
  errorBox.hidden = false;
}

function showError(e: unknown): void {
  const cancelled = (e as Error | undefined)?.name === 'AbortError';
  if (!cancelled) console.error(e);
  showMessage(cancelled ? 'Cancelled.' : explain(e), cancelled);
  // A lost device leaves the pipeline unusable: the next Generate loads a new one.
  if (loaded && !loaded.pipeline.usable) {
    void loaded?.pipeline.dispose().catch(() => {});
    loaded = null;
  }
  setState(cancelled ? 'cancelled' : 'error');
}

/** A folder served by `npm run web -- --model DIR` is the default; else the Hub's SDXL-Turbo. */
async function defaultSource(): Promise<string> {
  const asked = new URLSearchParams(location.search).get('model');
  if (asked) return asked;
  const local = await fetch('model/model_index.json', { method: 'HEAD' }).catch(() => null);
  return local?.ok ? './model/' : 'stabilityai/sdxl-turbo';
}

async function start(): Promise<void> {
  addEventListener('error', (e) => showError(e.error ?? e.message));
  addEventListener('unhandledrejection', (e) => showError(e.reason));
  $('form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!running) void generate();
  });
  form.cancel.addEventListener('click', () => running?.abort());
  // One model source at a time: the text field, a folder or a single file.
  const sources = [form.source, form.folder, form.checkpoint];
  for (const input of sources) {
    input.addEventListener(input === form.source ? 'input' : 'change', () => {
      for (const other of sources) if (other !== input) other.value = '';
    });
  }
  form.loras.addEventListener('change', showLoraScales);
  setupLive({
    pipeline: ensurePipeline,
    settings: () => ({
      seed: readNumber(form.seed, 'seed'),
      steps: readNumber(form.steps, 'steps'),
      strength: readNumber(form.strength, 'strength'),
      width: readNumber(form.width, 'width'),
      height: readNumber(form.height, 'height'),
    }),
    pickedImage: async () => {
      const file = form.image.files?.[0];
      return file ? decodeImage(file) : null;
    },
    // One GPU user at a time: Generate waits while Live is on.
    active: (on) => {
      form.generate.disabled = on;
    },
    showError,
  });
  $('clear-cache').addEventListener('click', () => {
    Promise.all([clearModelCache(), clearQ8Cache()]).then(
      ([files, q8]) => showMessage(files || q8 ? 'Downloaded and 8-bit weights removed from this browser.' : 'No downloaded or 8-bit weights were stored.', true),
      showError,
    );
  });
  form.source.value = await defaultSource();
  if (!navigator.gpu) {
    gpuInfo.textContent = 'WebGPU: not available';
    setState('idle');
    showError(new NoAdapterError(isSecureContext ? 'This browser has no navigator.gpu.' : 'WebGPU needs a secure context (https or localhost).'));
    return;
  }
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  gpuInfo.textContent = adapter
    ? `WebGPU available; shader-f16 ${adapter.features.has('shader-f16') ? 'supported (f16 compute)' : 'missing (f32 compute, twice the memory)'}`
    : 'WebGPU: no adapter';
  setState('idle');
  if (!adapter) showError(new NoAdapterError('navigator.gpu.requestAdapter() found no adapter (GPU blocklisted or hardware acceleration off).'));
}

void start();
