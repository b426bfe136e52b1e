// Node-only: PNG files to and from 8-bit RGB (encoding itself: io/png-encode.ts). Decoding matches
// what diffusers gets from PIL's `Image.open(f).convert('RGB')`: alpha is dropped (not composited),
// palettes and grayscale expand to RGB, low bit depths scale to 0…255, 16-bit samples keep their
// high byte. It streams: the image data inflates chunk by chunk and each scanline is unfiltered
// and written as RGB at once, so decoding holds the file, the RGB output and two scanlines — a
// 16-bit 8192² PNG of a few hundred KB never becomes gigabytes of samples — and inflating stops
// once the rows the header declares are complete (data past them is ignored, as PIL does).

import { readFile } from 'node:fs/promises';
import { createInflate } from 'node:zlib';
import { MAX_IMAGE_PIXELS as MAX_PIXELS, type RgbImage } from '../image.js';
import { writeFilesAtomic } from '../node/atomic-write.js';
import { crc32, PNG_SIGNATURE as SIGNATURE } from './png-encode.js';

/** Samples per pixel by colour type, and the bit depths the format allows for it. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS: Record<number, readonly number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
/** Adam7 passes: first column, first row, column step, row step. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const;

interface Header {
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  readonly colorType: number;
  readonly interlaced: boolean;
}

/**
 * The chunk structure, CRCs and header, checked before anything inflates; returns the header,
 * the image data (IDAT) pieces and the palette.
 */
function readChunks(bytes: Uint8Array, fail: (msg: string) => never): { header: Header; idat: Uint8Array[]; palette: Uint8Array | null } {
  if (bytes.byteLength < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) fail('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let header: Header = { width: 0, height: 0, depth: 0, colorType: 0, interlaced: false };
  const idat: Uint8Array[] = [];
  let palette: Uint8Array | null = null;
  for (let at = 8; ; ) {
    if (at + 8 > bytes.byteLength) fail(`truncated (the file ends at byte ${bytes.byteLength}, before the IEND chunk)`);
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const end = at + 12 + length;
    if (end > bytes.byteLength) fail(`truncated (chunk ${JSON.stringify(type)} of ${length} bytes at byte ${at} runs past the end, ${bytes.byteLength} bytes)`);
    if (crc32(bytes.subarray(at + 4, end - 4)) !== view.getUint32(end - 4)) fail(`corrupt (CRC mismatch in chunk ${JSON.stringify(type)} at byte ${at})`);
    if (at === 8) {
      if (type !== 'IHDR' || length !== 13) fail('the first chunk is not IHDR');
      header = { width: view.getUint32(16), height: view.getUint32(20), depth: bytes[24]!, colorType: bytes[25]!, interlaced: bytes[28] === 1 };
      const { width, height, depth, colorType } = header;
      if (width === 0 || height === 0 || width * height > MAX_PIXELS) fail(`unsupported size ${width}×${height} (at most ${MAX_PIXELS} pixels)`);
      if (!DEPTHS[colorType]?.includes(depth)) fail(`unsupported colour type ${colorType} with bit depth ${depth}`);
    }
    if (type === 'IDAT') idat.push(bytes.subarray(at + 8, end - 4));
    if (type === 'PLTE') palette = bytes.subarray(at + 8, end - 4);
    at = end;
    if (type === 'IEND') break;
  }
  if (header.colorType === 3 && !palette) fail('a palette image without a PLTE chunk');
  return { header, idat, palette };
}

/** Undoes a scanline's filter in place (`prior` is the previous row of the pass, zeros first). */
function unfilter(kind: number, row: Uint8Array, prior: Uint8Array, bpp: number, fail: (msg: string) => never): void {
  const n = row.length;
  if (kind === 0) return;
  if (kind === 1) for (let i = bpp; i < n; i++) row[i] = (row[i]! + row[i - bpp]!) & 0xff;
  else if (kind === 2) for (let i = 0; i < n; i++) row[i] = (row[i]! + prior[i]!) & 0xff;
  else if (kind === 3) for (let i = 0; i < n; i++) row[i] = (row[i]! + (((i >= bpp ? row[i - bpp]! : 0) + prior[i]!) >> 1)) & 0xff;
  else if (kind === 4) {
    for (let i = 0; i < n; i++) {
      const [a, b, c] = [i >= bpp ? row[i - bpp]! : 0, prior[i]!, i >= bpp ? prior[i - bpp]! : 0];
      const p = a + b - c;
      const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
      row[i] = (row[i]! + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 0xff;
    }
  } else fail(`corrupt image data (unknown scanline filter ${kind})`);
}

/** Decodes a PNG to 8-bit RGB; `description` (the file) names it in errors. */
export async function decodePng(bytes: Uint8Array, description: string): Promise<RgbImage> {
  const fail: (msg: string) => never = (msg) => {
    throw new Error(`${description}: invalid PNG: ${msg}`);
  };
  const { header, idat, palette } = readChunks(bytes, fail);
  const { width, height, depth, colorType, interlaced } = header;
  const channels = CHANNELS[colorType]!;
  const bpp = Math.max(1, (channels * depth) >> 3); // the filters' byte distance
  const passes = (interlaced ? ADAM7 : [[0, 0, 1, 1] as const])
    .map(([x0, y0, dx, dy]) => ({ x0, y0, dx, dy, w: Math.ceil(Math.max(width - x0, 0) / dx), h: Math.ceil(Math.max(height - y0, 0) / dy) }))
    .filter((p) => p.w > 0 && p.h > 0)
    .map((p) => ({ ...p, rowBytes: Math.ceil((p.w * channels * depth) / 8) }));
  const expected = passes.reduce((sum, p) => sum + p.h * (1 + p.rowBytes), 0);
  const out = new Uint8Array(width * height * 3);
  const maxValue = (1 << depth) - 1;

  /** Writes one unfiltered row of a pass as RGB. */
  const emit = (row: Uint8Array, pass: (typeof passes)[number], y: number): void => {
    const sample = (s: number): number => {
      if (depth === 8) return row[s]!;
      if (depth === 16) return row[2 * s]!; // the high byte
      const bit = s * depth;
      return (row[bit >> 3]! >> (8 - depth - (bit & 7))) & maxValue;
    };
    const scale = colorType === 3 ? 1 : 255 / maxValue; // low-depth gray to 0…255
    for (let i = 0; i < pass.w; i++) {
      const o = ((pass.y0 + y * pass.dy) * width + pass.x0 + i * pass.dx) * 3;
      if (colorType === 2 || colorType === 6) {
        out[o] = sample(i * channels);
        out[o + 1] = sample(i * channels + 1);
        out[o + 2] = sample(i * channels + 2);
      } else if (colorType === 3) {
        const at = sample(i) * 3; // an index past the palette reads black, as PIL shows it
        out[o] = palette![at] ?? 0;
        out[o + 1] = palette![at + 1] ?? 0;
        out[o + 2] = palette![at + 2] ?? 0;
      } else {
        out[o] = out[o + 1] = out[o + 2] = depth === 16 ? sample(i * channels) : Math.round(sample(i * channels) * scale);
      }
    }
  };

  // Scanlines assembled from the inflated stream, whatever its chunking.
  let pass = 0;
  let y = 0;
  let filled = 0;
  let line = new Uint8Array(1 + (passes[0]?.rowBytes ?? 0));
  let prior = new Uint8Array(line.length - 1);
  let inflated = 0;
  const inflate = createInflate();
  const input = (async () => {
    for (const piece of idat) if (!inflate.write(piece)) await new Promise((r) => inflate.once('drain', r));
    inflate.end();
  })().catch(() => undefined); // a write after the stream failed or stopped: reported below
  try {
    read: for await (const chunk of inflate as AsyncIterable<Buffer>) {
      for (let at = 0; at < chunk.byteLength; ) {
        const take = Math.min(line.length - filled, chunk.byteLength - at);
        line.set(chunk.subarray(at, at + take), filled);
        filled += take;
        at += take;
        inflated += take;
        if (filled < line.length) break;
        const row = line.subarray(1);
        unfilter(line[0]!, row, prior, bpp, fail);
        emit(row, passes[pass]!, y);
        [prior, line, filled] = [row.slice(), line, 0];
        if (++y === passes[pass]!.h) {
          if (++pass === passes.length) break read; // what follows is more than the header needs
          y = 0;
          line = new Uint8Array(1 + passes[pass]!.rowBytes);
          prior = new Uint8Array(line.length - 1);
        }
      }
    }
  } catch (e) {
    if ((e as Error).message.startsWith(description)) throw e;
    fail(`corrupt image data (${(e as Error).message})`);
  } finally {
    inflate.destroy();
    await input;
  }
  if (pass < passes.length) fail(`truncated image data (${inflated} of ${expected} bytes for ${width}×${height})`);
  return { width, height, data: out };
}

export async function readPng(path: string): Promise<RgbImage> {
  const bytes = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: cannot read (${e.code ?? e.message})`, { cause: e });
  });
  return await decodePng(bytes, path);
}

/** Writes an encoded PNG (GeneratedImage.png(), encodePng), naming the file in errors. */
/** Writes a PNG atomically (a temporary file beside it, renamed): never a truncated file. */
export async function writePng(path: string, png: Uint8Array): Promise<void> {
  await writeFilesAtomic([{ path, data: png }]);
}
