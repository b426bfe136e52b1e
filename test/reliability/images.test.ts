// Input images in bounded memory (issue 13, item 3): a PNG decodes scanline by scanline into its
// RGB output — a 16-bit file is never held as 16-bit samples, its inflated data never whole — and
// a resize holds a strip of columns in float, not the whole input. (FIFOs and devices as --image:
// files.test.ts; sizes from the header before decoding: test/io/image-file.test.ts.)

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { resizeLanczos } from '../../src/image.js';
import { crc32, PNG_SIGNATURE } from '../../src/io/png-encode.js';
import { decodePng } from '../../src/io/png.js';

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.byteLength);
  out.writeUInt32BE(data.byteLength, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.byteLength)), 8 + data.byteLength);
  return out;
}

/** A `side`² RGB PNG of `depth` bits whose pixel (x, y) has red = x, green = y (high bytes). */
function gradientPng(side: number, depth: 8 | 16): Buffer {
  const bytes = depth / 8;
  const row = 1 + side * 3 * bytes;
  const raw = Buffer.alloc(row * side);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      raw[y * row + 1 + x * 3 * bytes] = x & 0xff;
      raw[y * row + 1 + (x * 3 + 1) * bytes] = y & 0xff;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr[8] = depth;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from(PNG_SIGNATURE), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))]);
}

// A full collection before each sample, so a sample counts what the decoder still holds and not
// garbage the collector has not reached yet (that varied from run to run by over 13 MiB); the
// collected buffers' memory freed by the collection itself, not later on another thread.
setFlagsFromString('--expose-gc');
setFlagsFromString('--no-concurrent-array-buffer-sweeping');
const collectGarbage = runInNewContext('gc') as () => void;

function heldArrayBuffers(): number {
  collectGarbage();
  return process.memoryUsage().arrayBuffers;
}

/** The most ArrayBuffer memory held (sampled every 50 ms: a decoder that holds too much holds it for many samples) above the level before `work`. */
async function peakArrayBuffers<T>(work: () => Promise<T>): Promise<{ result: T; peak: number }> {
  const base = heldArrayBuffers();
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, heldArrayBuffers() - base)), 50);
  try {
    const result = await work();
    peak = Math.max(peak, heldArrayBuffers() - base);
    return { result, peak };
  } finally {
    clearInterval(timer);
  }
}

describe('bounded decoding', () => {
  it('a 16-bit 2048² PNG: right pixels, and never more than the RGB output and a few MB held', async () => {
    const side = 2048;
    const png = gradientPng(side, 16);
    const { result: image, peak } = await peakArrayBuffers(() => decodePng(png, 'g16.png'));
    expect([image.width, image.height]).toEqual([side, side]);
    for (const [x, y] of [[0, 0], [5, 1000], [2047, 2047]] as const) {
      expect(Array.from(image.data.subarray((y * side + x) * 3, (y * side + x) * 3 + 3))).toEqual([x & 0xff, y & 0xff, 0]);
    }
    // The output is 12 MiB; the 16-bit samples inflated whole would be 24 MiB more, pngjs's
    // RGBA copies more again. Beyond the output the decoder holds two scanlines and the inflate
    // stream's chunks in flight (about 0.1 MiB measured); 4 MiB fails a decoder that holds a
    // sixth of the 16-bit samples.
    const output = side * side * 3;
    expect(peak).toBeLessThan(output + 4 * 2 ** 20);
  });

  it('image data past the rows the header declares is not inflated (a small file cannot expand without bound)', async () => {
    // A 16×16 header over 64 MiB of zeros deflated to ~64 KB.
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(16, 0);
    ihdr.writeUInt32BE(16, 4);
    ihdr[8] = 8;
    ihdr[9] = 2;
    const bomb = Buffer.concat([Buffer.from(PNG_SIGNATURE), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(64 * 2 ** 20))), chunk('IEND', new Uint8Array(0))]);
    const { result: image, peak } = await peakArrayBuffers(() => decodePng(bomb, 'bomb.png'));
    expect(image.data).toEqual(new Uint8Array(16 * 16 * 3));
    expect(peak).toBeLessThan(8 * 2 ** 20); // far below the 64 MiB the data would inflate to
  });

  it('a resize of a 2048² image to 64² holds a strip in float, not a float copy of the input (48 MiB)', async () => {
    const side = 2048;
    const image = { width: side, height: side, data: new Uint8Array(side * side * 3).fill(200) };
    const { result, peak } = await peakArrayBuffers(async () => resizeLanczos(image, 64, 64));
    expect(result.data).toEqual(new Uint8Array(64 * 64 * 3).fill(200));
    expect(peak).toBeLessThan(2 * 2 ** 20); // a 64-column strip of 2048 rows in float is 1.5 MiB
  });
});
