// Node-only: PNG files to and from 8-bit RGB, via pngjs. Decoding matches what diffusers gets
// from PIL's `Image.open(f).convert('RGB')`: alpha is dropped (not composited), palettes and
// grayscale expand to RGB, low bit depths scale to 0…255, 16-bit samples keep their high byte.

import { readFile, writeFile } from 'node:fs/promises';
import { PNG } from 'pngjs';

export interface RgbImage {
  readonly width: number;
  readonly height: number;
  /** Row-major HWC, 3 bytes per pixel. */
  readonly data: Uint8Array;
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** Far above SDXL's sizes; refuses a header that would make the decoder allocate gigabytes. */
const MAX_PIXELS = 8192 * 8192;

/**
 * Checks the chunk structure (so a truncated or foreign file gets a clear message before pngjs
 * sees it) and returns the bytes to decode: with a grayscale/RGB tRNS colour key removed, since
 * pngjs would zero the colour of those pixels where PIL's convert('RGB') keeps it.
 */
function checkChunks(bytes: Uint8Array, fail: (msg: string) => never): { bytes: Uint8Array; depth: number } {
  if (bytes.byteLength < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) fail('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let depth = 0;
  let colorType = 0;
  const keep: Array<[number, number]> = [[0, 8]];
  let dropped = false;
  for (let at = 8; ; ) {
    if (at + 12 > bytes.byteLength) fail(`truncated (no IEND chunk; file ends at byte ${bytes.byteLength})`);
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const end = at + 12 + length;
    if (end > bytes.byteLength) fail(`truncated (chunk ${JSON.stringify(type)} of ${length} bytes at byte ${at} runs past the end, ${bytes.byteLength} bytes)`);
    if (at === 8) {
      if (type !== 'IHDR' || length !== 13) fail('the first chunk is not IHDR');
      const [width, height] = [view.getUint32(at + 8), view.getUint32(at + 12)];
      [depth, colorType] = [bytes[at + 16]!, bytes[at + 17]!];
      if (width === 0 || height === 0 || width * height > MAX_PIXELS) fail(`unsupported size ${width}×${height} (at most ${MAX_PIXELS} pixels)`);
    }
    if (type === 'tRNS' && (colorType === 0 || colorType === 2)) dropped = true;
    else keep.push([at, end]);
    at = end;
    if (type === 'IEND') break;
  }
  if (!dropped) return { bytes, depth };
  const total = keep.reduce((a, [b, e]) => a + e - b, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const [b, e] of keep) {
    out.set(bytes.subarray(b, e), o);
    o += e - b;
  }
  return { bytes: out, depth };
}

/** Decodes a PNG to 8-bit RGB; `description` (the file) names it in errors. */
export function decodePng(bytes: Uint8Array, description: string): RgbImage {
  const fail: (msg: string) => never = (msg) => {
    throw new Error(`${description}: invalid PNG: ${msg}`);
  };
  const checked = checkChunks(bytes, fail);
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(checked.bytes.buffer, checked.bytes.byteOffset, checked.bytes.byteLength), { skipRescale: checked.depth === 16 });
  } catch (e) {
    return fail((e as Error).message);
  }
  const { width, height } = png;
  // RGBA from pngjs: bytes, or 16-bit samples when skipRescale kept them.
  const rgba = png.data as unknown as ArrayLike<number>;
  const shift = checked.depth === 16 ? 8 : 0;
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    data[3 * p] = rgba[4 * p]! >> shift;
    data[3 * p + 1] = rgba[4 * p + 1]! >> shift;
    data[3 * p + 2] = rgba[4 * p + 2]! >> shift;
  }
  return { width, height, data };
}

/** Encodes 8-bit RGB as a PNG (colour type 2, no alpha). */
export function encodePng(image: RgbImage): Uint8Array {
  const { width, height, data } = image;
  if (!(Number.isSafeInteger(width) && Number.isSafeInteger(height) && width > 0 && height > 0) || data.byteLength !== width * height * 3) {
    throw new Error(`encodePng: ${width}×${height} RGB needs ${width * height * 3} bytes, got ${data.byteLength}`);
  }
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return PNG.sync.write({ width, height, data: buffer } as PNG, { colorType: 2, inputColorType: 2, inputHasAlpha: false, bitDepth: 8 });
}

export async function readPng(path: string): Promise<RgbImage> {
  const bytes = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: cannot read (${e.code ?? e.message})`, { cause: e });
  });
  return decodePng(bytes, path);
}

export async function writePng(path: string, image: RgbImage): Promise<void> {
  await writeFile(path, encodePng(image)).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: cannot write (${e.code ?? e.message})`, { cause: e });
  });
}
