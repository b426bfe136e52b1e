// Runs inside the browser page of test/browser/e2e.test.ts. It is bundled with the library
// import pointed at the shipped bundle (/lib/sdxl-turbo.js), so the test exercises what
// `npm run build` ships; the safetensors reader is bundled in only to read the references.

import { decodeImage, loadPipeline, MODEL_CACHE, type Pipeline, readPngText, UsageError } from '../../src/browser.js';
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
  /** 8-bit weights (docs/Q8.md), quantized in the page at load. */
  readonly weights?: 'q8';
}

export interface BrowserCaseResult {
  readonly finalLatents: number[];
  readonly image: number[];
  readonly imageUint8: number[];
  /** The first image's png(): the Blob's type and its text chunks. */
  readonly png: { type: string; text: Record<string, string> };
}

const RANDOM_INPUTS = /^(initial_latents|step\d+\.noise|posterior_noise|add_noise_noise)$/;

const pipelines: Partial<Record<'float' | 'q8', Promise<Pipeline>>> = {};

/** One recorded run with diffusers' random draws, on fp32 weights in f32 (the f32 parity setting). */
export async function runCase(c: BrowserCase): Promise<BrowserCaseResult> {
  const p = await (pipelines[c.weights ?? 'float'] ??= loadPipeline('/model/', { variant: 'fp32', dtype: 'f32', ...(c.weights ? { weights: c.weights } : {}) }));
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
