// Runs inside the browser page of test/browser/e2e.test.ts. It is bundled with the library
// import pointed at the shipped bundle (/lib/sdxl-turbo.js), so the test exercises what
// `npm run build` ships; the safetensors reader is bundled in only to read the references.

import { cachedQ8Size, decodeImage, type LiveFrame, loadPipeline, MODEL_CACHE, type Pipeline, Q8_CACHE, readPngText, UsageError } from '../../src/browser.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { openUrlReader } from '../../src/io/url-reader.js';
import { poisonPool } from '../helpers/poison.js';

export interface BrowserCase {
  readonly name: string;
  readonly prompt: string;
  readonly steps: number;
  readonly seed: number;
  readonly width: number;
  readonly height: number;
  readonly strength?: number;
}

export interface BrowserCaseResult {
  readonly finalLatents: number[];
  readonly image: number[];
  readonly imageUint8: number[];
  /** The first image's png(): the Blob's type and its text chunks. */
  readonly png: { type: string; text: Record<string, string> };
}

const RANDOM_INPUTS = /^(initial_latents|step\d+\.noise|posterior_noise|add_noise_noise)$/;

/** The fp32 pipeline in f32, loaded once for the page's recorded runs and live session. */
let floatPipeline: Promise<Pipeline> | undefined;

/** One recorded run with diffusers' random draws, on fp32 weights in f32 (the f32 parity setting). */
export async function runCase(c: BrowserCase): Promise<BrowserCaseResult> {
  const p = await (floatPipeline ??= loadPipeline('/model/', { variant: 'fp32', dtype: 'f32' }));
  const reference = await SafetensorsFile.open(await openUrlReader(`/reference/e2e_${c.name}.safetensors`));
  const inputs = new Map<string, Float32Array>();
  let inputImage: Uint8Array | null = null;
  for (const key of reference.raw.keys()) {
    const short = key.slice(c.name.length + 1);
    const { bytes } = await reference.readBytes(key);
    if (RANDOM_INPUTS.test(short)) inputs.set(short, new Float32Array(bytes.slice().buffer));
    if (short === 'input_image_uint8') inputImage = bytes.slice();
  }
  poisonPool(p.gpu, 1 << 20);
  const common = { prompt: c.prompt, steps: c.steps, seed: c.seed, width: c.width, height: c.height, inputs, returnTensors: true };
  const result = c.strength
    ? await p.imageToImage({ ...common, strength: c.strength, image: { width: c.width, height: c.height, data: inputImage! } })
    : await p.generate(common);
  const png = await result.images[0]!.png();
  return {
    png: { type: png.type, text: readPngText(new Uint8Array(await png.arrayBuffer())) },
    finalLatents: Array.from(result.tensors!.get('final_latents')!.data),
    image: Array.from(result.tensors!.get('image')!.data),
    imageUint8: Array.from(result.images[0]!.data),
  };
}

export interface LiveResult {
  /** The frame of the last of the prompts sent back to back, and a one-shot run of it. */
  readonly last: { request: number; prompt: string; rgb: number[] };
  readonly oneShot: number[];
  readonly stats: { frames: number; dropped: number };
  /** The pool's live bytes before the session, after `frames` more frames, and after close(). */
  readonly live: { before: number; warm: number; after: number; closed: number };
}

/** A live session in the page: `prompts` sent back to back, then each once, then `frames`
 *  requests cycling through them, each awaited (every third preceded by one it cancels). */
export async function runLive(o: { prompts: string[]; seed: number; size: number; frames: number }): Promise<LiveResult> {
  const p = await (floatPipeline ??= loadPipeline('/model/', { variant: 'fp32', dtype: 'f32' }));
  const liveBytes = (): number => p.gpu.pool.stats.liveBytes;
  const before = liveBytes();
  const session = p.live({ width: o.size, height: o.size, seed: o.seed });
  await session.ready();
  const frames = session.frames();
  const frameFor = async (sequence: number): Promise<LiveFrame<Blob>> => {
    for (;;) {
      const next = await frames.next();
      if (next.done) throw new Error(`the session ended before request ${sequence} got a frame`);
      if (next.value.request >= sequence) return next.value;
    }
  };
  let lastSequence = 0;
  for (const prompt of o.prompts) lastSequence = session.update({ prompt });
  const last = await frameFor(lastSequence);
  const stats = session.stats();
  // Every prompt's embeddings cached (they stay until close()), then the frames to count.
  for (const prompt of o.prompts) await frameFor(session.update({ prompt }));
  const warm = liveBytes();
  const n = o.prompts.length;
  for (let i = 0; i < o.frames; i++) {
    if (i % 3 === 0) session.update({ prompt: o.prompts[(i + 1) % n]! });
    await frameFor(session.update({ prompt: o.prompts[i % n]! }));
  }
  const after = liveBytes();
  await session.close();
  const oneShot = await p.generate({ prompt: last.prompt, seed: o.seed, width: o.size, height: o.size });
  return {
    last: { request: last.request, prompt: last.prompt, rgb: Array.from(last.image.data) },
    oneShot: Array.from(oneShot.images[0]!.data),
    stats: { frames: stats.frames, dropped: stats.dropped },
    live: { before, warm, after, closed: liveBytes() },
  };
}

/** The folder picked in the page's <input webkitdirectory>, loaded: what it was taken as. */
export async function loadPicked(): Promise<{ description: string; unet: string }> {
  const input = document.querySelector<HTMLInputElement>('input[webkitdirectory]')!;
  const p = await loadPipeline(input.files!, { variant: 'fp16' });
  const picked = { description: p.folder.description, unet: p.folder.weightFile('unet') };
  await p.dispose();
  return picked;
}

/** The error loadPipeline gives for `source` (null if it loads), and what the cache then holds. */
export async function tryLoad(source: string): Promise<{ error: string | null; cached: string[] }> {
  let error: string | null = null;
  try {
    await (await loadPipeline(source)).dispose();
  } catch (e) {
    error = (e as Error).message;
  }
  const cached = (await (await caches.open(MODEL_CACHE)).keys()).map((r) => new URL(r.url).pathname);
  return { error, cached };
}

/** decodeImage on a File of these bytes: its size and RGB pixels, or the error it rejects with. */
export async function decode(bytes: number[], name: string, type: string): Promise<{ width: number; height: number; rgb: number[] } | { error: string; usage: boolean }> {
  try {
    const image = await decodeImage(new File([Uint8Array.from(bytes)], name, { type }));
    return { width: image.width, height: image.height, rgb: Array.from(image.data) };
  } catch (e) {
    return { error: (e as Error).message, usage: e instanceof UsageError };
  }
}

export interface Q8CacheRun {
  /** cachedQ8Size before and after the load. */
  readonly sizeBefore: number | null;
  readonly sizeAfter: number | null;
  /** The paths the 8-bit cache holds after the load. */
  readonly kept: string[];
  /** The image of `generate` (empty when not asked for). */
  readonly rgb: number[];
  /** console.warn calls during the load. */
  readonly warnings: string[];
}

const TINY_Q8 = { variant: 'fp32', weights: 'q8' } as const;

/** A q8 load of the tiny model's fp32 files (f32), with the 8-bit cache, then disposed: with
 *  `generate`, one image after it; with `stopAtLoad`, cancelled once the weights start to load
 *  (the cache is made or found by then; compiling, SwiftShader's slowest step, is skipped). */
export async function runQ8Cached(o: { generate?: { prompt: string; seed: number; size: number }; stopAtLoad?: boolean }): Promise<Q8CacheRun> {
  const sizeBefore = await cachedQ8Size('/model/', TINY_Q8);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warnings.push(args.join(' '));
  const stop = new AbortController();
  let rgb: number[] = [];
  try {
    const p = await loadPipeline('/model/', { ...TINY_Q8, dtype: 'f32', signal: stop.signal, onProgress: (e) => o.stopAtLoad && e.stage === 'load' && stop.abort(new Error('stopped at load')) });
    if (o.generate) rgb = Array.from((await p.generate({ prompt: o.generate.prompt, seed: o.generate.seed, width: o.generate.size, height: o.generate.size })).images[0]!.data);
    await p.dispose();
  } catch (e) {
    if (!stop.signal.aborted) throw e;
  } finally {
    console.warn = warn;
  }
  const kept = (await (await caches.open(Q8_CACHE)).keys()).map((r) => new URL(r.url).pathname);
  return { sizeBefore, sizeAfter: await cachedQ8Size('/model/', TINY_Q8), kept, rgb, warnings };
}

/** Spoils the 8-bit cache's marker: another kernel hash in it, or no marker at all. */
export async function spoilQ8Marker(how: 'kernel' | 'remove'): Promise<void> {
  const cache = await caches.open(Q8_CACHE);
  const marker = (await cache.keys()).find((r) => r.url.endsWith('/complete.json'))!;
  if (how === 'remove') return void (await cache.delete(marker));
  const json = await (await cache.match(marker))!.json();
  await cache.put(marker, Response.json({ ...json, key: { ...json.key, kernel: '00000000' } }));
}

/** From now on, putting a weight file into the 8-bit cache fails as a full disk does. */
export function failQ8Writes(): void {
  const put = Cache.prototype.put;
  Cache.prototype.put = function (request, response) {
    const url = typeof request === 'string' ? request : request instanceof URL ? request.href : request.url;
    if (url.includes('.sdxl-turbo-q8/') && url.endsWith('.safetensors')) return Promise.reject(new DOMException('the quota is exceeded (test)', 'QuotaExceededError'));
    return put.call(this, request, response);
  };
}
