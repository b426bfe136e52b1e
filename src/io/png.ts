// Node-only: PNG files to and from 8-bit RGB (encoding itself: io/png-encode.ts). Decoding, via
// pngjs, matches what diffusers gets from PIL's `Image.open(f).convert('RGB')`: alpha is dropped (not composited), palettes and
// grayscale expand to RGB, low bit depths scale to 0…255, 16-bit samples keep their high byte.

import { readFile } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import { MAX_IMAGE_PIXELS as MAX_PIXELS, type RgbImage } from '../image.js';
import { writeFilesAtomic } from '../node/atomic-write.js';
import { crc32, PNG_SIGNATURE as SIGNATURE } from './png-encode.js';


/** Samples per pixel by colour type. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Adam7 passes: first column, first row, column step, row step. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const;

/**
 * Checks what pngjs lets through or reports confusingly: the chunk structure, CRCs and that the
 * image data inflates to the size the header promises (pngjs would silently return zeros for
 * a truncated stream; PIL says "image file is truncated"). Returns the bytes to decode, with a
 * grayscale/RGB tRNS colour key removed, since pngjs would zero the colour of those pixels where
 * PIL's convert('RGB') keeps it.
 */
function checkPng(bytes: Uint8Array, fail: (msg: string) => never): { bytes: Uint8Array; depth: number } {
  if (bytes.byteLength < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) fail('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let ihdr = { width: 0, height: 0, depth: 0, colorType: 0, interlaced: false };
  const keep: Uint8Array[] = [bytes.subarray(0, 8)];
  const idat: Uint8Array[] = [];
  let dropped = false;
  for (let at = 8; ; ) {
    if (at + 8 > bytes.byteLength) fail(`truncated (the file ends at byte ${bytes.byteLength}, before the IEND chunk)`);
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const end = at + 12 + length;
    if (end > bytes.byteLength) fail(`truncated (chunk ${JSON.stringify(type)} of ${length} bytes at byte ${at} runs past the end, ${bytes.byteLength} bytes)`);
    if (crc32(bytes.subarray(at + 4, end - 4)) !== view.getUint32(end - 4)) fail(`corrupt (CRC mismatch in chunk ${JSON.stringify(type)} at byte ${at})`);
    if (at === 8) {
      if (type !== 'IHDR' || length !== 13) fail('the first chunk is not IHDR');
      ihdr = { width: view.getUint32(16), height: view.getUint32(20), depth: bytes[24]!, colorType: bytes[25]!, interlaced: bytes[28] === 1 };
      if (ihdr.width === 0 || ihdr.height === 0 || ihdr.width * ihdr.height > MAX_PIXELS) fail(`unsupported size ${ihdr.width}×${ihdr.height} (at most ${MAX_PIXELS} pixels)`);
      if (!(ihdr.colorType in CHANNELS) || ![1, 2, 4, 8, 16].includes(ihdr.depth)) fail(`unsupported colour type ${ihdr.colorType} with bit depth ${ihdr.depth}`);
    }
    if (type === 'IDAT') idat.push(bytes.subarray(at + 8, end - 4));
    if (type === 'tRNS' && (ihdr.colorType === 0 || ihdr.colorType === 2)) dropped = true;
    else keep.push(bytes.subarray(at, end));
    at = end;
    if (type === 'IEND') break;
  }
  const { width, height, depth, colorType, interlaced } = ihdr;
  let expected = 0;
  for (const [x0, y0, dx, dy] of interlaced ? ADAM7 : [[0, 0, 1, 1] as const]) {
    const [w, h] = [Math.ceil(Math.max(width - x0, 0) / dx), Math.ceil(Math.max(height - y0, 0) / dy)];
    if (w > 0 && h > 0) expected += h * (1 + Math.ceil((w * CHANNELS[colorType]! * depth) / 8));
  }
  let inflated = 0;
  try {
    inflated = inflateSync(Buffer.concat(idat), { maxOutputLength: expected }).byteLength;
  } catch (e) {
    // More data than the header needs is ignored (as PIL does); anything else is corrupt.
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') inflated = expected;
    else fail(`corrupt image data (${(e as Error).message})`);
  }
  if (inflated < expected) fail(`truncated image data (${inflated} of ${expected} bytes for ${width}×${height})`);
  return { bytes: dropped ? Buffer.concat(keep) : bytes, depth };
}

/** Decodes a PNG to 8-bit RGB; `description` (the file) names it in errors. */
export function decodePng(bytes: Uint8Array, description: string): RgbImage {
  const fail: (msg: string) => never = (msg) => {
    throw new Error(`${description}: invalid PNG: ${msg}`);
  };
  const checked = checkPng(bytes, fail);
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

export async function readPng(path: string): Promise<RgbImage> {
  const bytes = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: cannot read (${e.code ?? e.message})`, { cause: e });
  });
  return decodePng(bytes, path);
}

/** Writes an encoded PNG (GeneratedImage.png(), encodePng), naming the file in errors. */
/** Writes a PNG atomically (a temporary file beside it, renamed): never a truncated file. */
export async function writePng(path: string, png: Uint8Array): Promise<void> {
  await writeFilesAtomic([{ path, data: png }]);
}
