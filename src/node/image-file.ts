// Node-only: image files to 8-bit RGB for image-to-image. PNG (our streaming decoder, io/png.ts), JPEG (jpeg-js)
// and WebP (libwebp as WebAssembly, @jsquash/webp), told apart by their first bytes, not the
// name. Sizes are checked from the file's size and its header before any decoder allocates;
// EXIF orientation is applied (exifr) as diffusers' load_image does (PIL's exif_transpose).
// Every failure is a UsageError naming the file and the problem on one line.

// @jsquash/webp's declarations use this global namespace without referencing its file.
/// <reference types="@jsquash/webp/emscripten-types" />

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import exifr from 'exifr';
import jpeg from 'jpeg-js';
import { UsageError } from '../errors.js';
import { MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, type RgbImage, rgbaToRgb } from '../image.js';
import { readRegularFile } from '../io/node-file.js';
import { decodePng } from '../io/png.js';

type ImageFormat = 'png' | 'jpeg' | 'webp';

export interface ImageLimits {
  /** Largest file accepted, in bytes (default MAX_IMAGE_BYTES). */
  readonly maxBytes?: number;
  /** Largest width × height accepted, read from the header before decoding (default MAX_IMAGE_PIXELS). */
  readonly maxPixels?: number;
}

const SUPPORTED = 'PNG, JPEG and WebP are supported';

/** What the first bytes say the file is: one we decode, or the name of one we don't. */
function sniff(bytes: Uint8Array): ImageFormat | string {
  const ascii = (from: number, to: number): string => String.fromCharCode(...bytes.subarray(from, to));
  if (bytes[0] === 0x89 && ascii(1, 4) === 'PNG') return 'png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (ascii(0, 3) === 'GIF') return 'GIF';
  if (ascii(0, 2) === 'BM') return 'BMP';
  if (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*') return 'TIFF';
  if (ascii(4, 8) === 'ftyp') return /^(avif|avis)$/.test(ascii(8, 12)) ? 'AVIF' : /^(heic|heix|mif1|msf1)$/.test(ascii(8, 12)) ? 'HEIF' : 'ISO media';
  if (ascii(0, 6) === '\0\0\0\x0cjP' || (bytes[0] === 0xff && bytes[1] === 0x4f)) return 'JPEG 2000';
  return bytes.byteLength === 0 ? 'an empty file' : 'an unknown format';
}

type Fail = (problem: string) => never;

const u16be = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const u24le = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);

/** JPEG coding processes by SOF marker; jpeg-js decodes the Huffman ones of 0xc0–0xc2. */
const SOF: Record<number, string> = {
  0xc0: 'baseline', 0xc1: 'extended sequential', 0xc2: 'progressive', 0xc3: 'lossless',
  0xc5: 'hierarchical', 0xc6: 'hierarchical progressive', 0xc7: 'hierarchical lossless',
  0xc9: 'arithmetic-coded', 0xca: 'arithmetic-coded progressive', 0xcb: 'arithmetic-coded lossless',
  0xcd: 'arithmetic-coded hierarchical', 0xce: 'arithmetic-coded hierarchical progressive', 0xcf: 'arithmetic-coded hierarchical lossless',
};

const EOI = Uint8Array.of(0xff, 0xd9);

/**
 * Walks a JPEG's segments up to the first scan: the frame's size and the checks jpeg-js makes
 * late or reports vaguely (coding process, sample precision, CMYK without Adobe's marker,
 * a file cut before the end-of-image marker).
 */
function jpegHeader(bytes: Uint8Array, fail: Fail): { width: number; height: number } {
  let frame: { width: number; height: number; components: number } | null = null;
  let adobe = false;
  let at = 2;
  for (;;) {
    if (at + 4 > bytes.byteLength) fail(`truncated JPEG (the file ends at byte ${bytes.byteLength}, before the image data)`);
    if (bytes[at] !== 0xff) fail(`corrupt JPEG (no segment marker at byte ${at})`);
    const marker = bytes[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    const length = u16be(bytes, at + 2);
    if (at + 2 + length > bytes.byteLength) fail(`truncated JPEG (segment 0x${marker.toString(16)} of ${length} bytes at byte ${at} runs past the end, ${bytes.byteLength} bytes)`);
    if (marker in SOF) {
      if (marker > 0xc2) fail(`unsupported JPEG coding (${SOF[marker]}); baseline and progressive JPEGs are supported`);
      const precision = bytes[at + 4]!;
      if (precision !== 8) fail(`unsupported ${precision}-bit JPEG (8-bit samples only)`);
      frame = { height: u16be(bytes, at + 5), width: u16be(bytes, at + 7), components: bytes[at + 9]! };
    }
    if (marker === 0xee && String.fromCharCode(...bytes.subarray(at + 4, at + 9)) === 'Adobe') adobe = true;
    if (marker === 0xda) break; // start of scan: the header is over
    at += 2 + length;
  }
  if (!frame) fail('corrupt JPEG (image data before any frame header)');
  const { width, height, components } = frame;
  if (width === 0 || height === 0) fail(`unsupported JPEG size ${width}×${height}`);
  if (components === 4 && !adobe) fail('unsupported JPEG: 4 colour components (CMYK) without an Adobe marker, whose colour transform is unknown');
  if (![1, 3, 4].includes(components)) fail(`unsupported JPEG: ${components} colour components (1, 3 or 4 supported)`);
  // Entropy-coded data escapes 0xff, so 0xff 0xd9 past the header can only be the end of image.
  if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(EOI, at) < 0) fail('truncated JPEG (no end-of-image marker)');
  return { width, height };
}

/** A WebP's canvas size from its first chunk (lossy VP8, lossless VP8L or extended VP8X). */
function webpHeader(bytes: Uint8Array, fail: Fail): { width: number; height: number } {
  if (bytes.byteLength < 30) fail(`truncated WebP (${bytes.byteLength} bytes, shorter than its header)`);
  const riffEnd = 8 + (bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16)) + bytes[7]! * 2 ** 24;
  if (riffEnd > bytes.byteLength) fail(`truncated WebP (the file ends at byte ${bytes.byteLength}, its RIFF header says ${riffEnd})`);
  const chunk = String.fromCharCode(...bytes.subarray(12, 16));
  if (chunk === 'VP8 ') {
    if (bytes[23] !== 0x9d || bytes[24] !== 0x01 || bytes[25] !== 0x2a) fail('corrupt WebP (bad VP8 start code)');
    return { width: (bytes[26]! | (bytes[27]! << 8)) & 0x3fff, height: (bytes[28]! | (bytes[29]! << 8)) & 0x3fff };
  }
  if (chunk === 'VP8L') {
    if (bytes[20] !== 0x2f) fail('corrupt WebP (bad VP8L signature)');
    const bits = bytes[21]! | (bytes[22]! << 8) | (bytes[23]! << 16) | (bytes[24]! << 24);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X') {
    if (bytes[20]! & 0x02) fail('unsupported animated WebP (a still image is needed)');
    return { width: u24le(bytes, 24) + 1, height: u24le(bytes, 27) + 1 };
  }
  return fail(`corrupt WebP (unknown first chunk ${JSON.stringify(chunk)})`);
}

/** The image's size from its header, for PNG from IHDR (decodePng checks the rest). */
function headerSize(format: ImageFormat, bytes: Uint8Array, fail: Fail): { width: number; height: number } {
  if (format === 'jpeg') return jpegHeader(bytes, fail);
  if (format === 'webp') return webpHeader(bytes, fail);
  if (bytes.byteLength < 24) fail(`truncated PNG (${bytes.byteLength} bytes, shorter than its header)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, 24);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

function checkFileSize(size: number, limits: ImageLimits, fail: Fail): void {
  const maxBytes = limits.maxBytes ?? MAX_IMAGE_BYTES;
  if (size > maxBytes) fail(`too large (${size} bytes; at most ${maxBytes})`);
}

/** libwebp's decoder, compiled once: @jsquash/webp fetches its .wasm by URL, which Node's fetch
 *  cannot do for a file, so it gets the module compiled from the package's file. */
let webpDecoder: Promise<(bytes: ArrayBuffer) => Promise<{ width: number; height: number; data: Uint8ClampedArray }>> | null = null;

function loadWebpDecoder(): NonNullable<typeof webpDecoder> {
  webpDecoder ??= (async () => {
    const { default: decode, init } = await import('@jsquash/webp/decode.js');
    const wasm = await readFile(createRequire(import.meta.url).resolve('@jsquash/webp/codec/dec/webp_dec.wasm'));
    await init(await WebAssembly.compile(wasm));
    return decode;
  })();
  return webpDecoder;
}

/**
 * Output pixel (x, y) of an EXIF orientation (2–8) reads source pixel [sx, sy] of the w×h image;
 * 5–8 swap width and height (6: the camera was turned clockwise, so the image turns clockwise).
 */
const ORIENTATIONS: Record<number, (x: number, y: number, w: number, h: number) => [number, number]> = {
  2: (x, y, w) => [w - 1 - x, y],
  3: (x, y, w, h) => [w - 1 - x, h - 1 - y],
  4: (x, y, _w, h) => [x, h - 1 - y],
  5: (x, y) => [y, x],
  6: (x, y, _w, h) => [y, h - 1 - x],
  7: (x, y, w, h) => [w - 1 - y, h - 1 - x],
  8: (x, y, w) => [w - 1 - y, x],
};

function orient(image: RgbImage, orientation: number): RgbImage {
  const source = ORIENTATIONS[orientation];
  if (!source) return image;
  const { width: w, height: h, data } = image;
  const [width, height] = orientation >= 5 ? [h, w] : [w, h];
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [sx, sy] = source(x, y, w, h);
      out.set(data.subarray((sy * w + sx) * 3, (sy * w + sx) * 3 + 3), (y * width + x) * 3);
    }
  }
  return { width, height, data: out };
}

/** The EXIF orientation tag (1 when there is none, or the EXIF block is unreadable: a browser
 *  shows such a file unrotated too). */
async function exifOrientation(bytes: Uint8Array): Promise<number> {
  try {
    return (await exifr.orientation(bytes)) ?? 1;
  } catch {
    return 1;
  }
}

/**
 * Decodes a PNG, JPEG or WebP file's bytes to 8-bit RGB as PIL's `exif_transpose(Image.open(f))
 * .convert('RGB')` gives it: alpha dropped (not composited), grey and palettes expanded, EXIF
 * orientation applied (JPEG, PNG). `description` (the file) starts every error message.
 */
export async function decodeImage(bytes: Uint8Array, description: string, limits: ImageLimits = {}): Promise<RgbImage> {
  const fail: Fail = (problem) => {
    throw new UsageError(`${description}: ${problem}`);
  };
  const maxPixels = limits.maxPixels ?? MAX_IMAGE_PIXELS;
  checkFileSize(bytes.byteLength, limits, fail);
  const format = sniff(bytes);
  if (format !== 'png' && format !== 'jpeg' && format !== 'webp') return fail(`not an image this can read (${format}); ${SUPPORTED}`);
  const { width, height } = headerSize(format, bytes, fail);
  if (width * height > maxPixels) fail(`too large (${width}×${height} pixels; at most ${maxPixels} pixels)`);
  let image: RgbImage;
  if (format === 'png') {
    try {
      image = await decodePng(bytes, description);
    } catch (e) {
      throw new UsageError((e as Error).message, { cause: e });
    }
  } else if (format === 'jpeg') {
    try {
      // Not tolerant: a damaged file is an error, as PIL's "image file is truncated".
      const decoded = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false, maxResolutionInMP: maxPixels / 1e6, maxMemoryUsageInMB: 4096 });
      image = { width: decoded.width, height: decoded.height, data: decoded.data };
    } catch (e) {
      throw new UsageError(`${description}: corrupt JPEG data (${(e as Error).message})`, { cause: e });
    }
  } else {
    const decode = await loadWebpDecoder();
    // The decoder takes an ArrayBuffer of its own.
    const decoded = await decode(bytes.slice().buffer as ArrayBuffer).catch((e: Error) => {
      throw new UsageError(`${description}: corrupt WebP data (libwebp could not decode it: ${e.message})`, { cause: e });
    });
    image = rgbaToRgb(decoded.width, decoded.height, decoded.data);
  }
  return format === 'webp' ? image : orient(image, await exifOrientation(bytes));
}

/** Reads and decodes an image file (see decodeImage): a regular file only (not a FIFO or a
 *  device), its size checked before reading. */
export async function readImage(path: string, limits: ImageLimits = {}): Promise<RgbImage> {
  const maxBytes = limits.maxBytes ?? MAX_IMAGE_BYTES;
  const bytes = await readRegularFile(path, path, maxBytes, (size) => `too large (${size} bytes; at most ${maxBytes})`).catch((e: Error) => {
    if (e instanceof UsageError) throw e;
    const code = (e.cause as NodeJS.ErrnoException | undefined)?.code;
    throw new UsageError(`${path}: cannot read (${code ?? e.message})`, { cause: e });
  });
  return decodeImage(bytes, path, limits);
}
