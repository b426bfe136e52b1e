// Image files in (src/node/image-file.ts): PNG, JPEG and WebP told apart by their bytes, EXIF
// orientation, the size caps checked from the header, and one clear line naming the file for
// anything else. Test images: test/helpers/images.ts.

import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { MAX_IMAGE_BYTES, type RgbImage } from '../../src/image.js';
import { encodePng } from '../../src/io/png-encode.js';
import { decodeImage, readImage } from '../../src/node/image-file.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { maxAbsDiff } from '../helpers/gpu.js';
import { decodeJpegJs, encodeJpeg, encodeWebp, exifTiff } from '../helpers/images.js';

/** A smooth picture (gradients), which JPEG keeps within a few levels at high quality. */
function gradient(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set([(x * 255) / (width - 1), (y * 255) / (height - 1), 128], (y * width + x) * 3);
  }
  return { width, height, data };
}

/** Top half red, bottom half blue: where they end up shows a rotation at a glance. */
function halves(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) data.set(p < (width * height) / 2 ? [255, 0, 0] : [0, 0, 255], 3 * p);
  return { width, height, data };
}

/** A PNG with an eXIf chunk after IHDR (lossless, so every orientation can be checked exactly). */
async function pngWithOrientation(image: RgbImage, orientation: number): Promise<Uint8Array> {
  const png = await encodePng(image);
  const tiff = exifTiff(orientation);
  const chunk = Buffer.alloc(12 + tiff.length);
  chunk.writeUInt32BE(tiff.length, 0);
  chunk.write('eXIf', 4, 'latin1');
  chunk.set(tiff, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + tiff.length)), 8 + tiff.length);
  return Buffer.concat([png.subarray(0, 33), chunk, png.subarray(33)]);
}

/** A JPEG of only markers: SOI, the segments given, SOS, one byte of data, EOI. */
function jpegSegments(...segments: Array<[number, number[]]>): Uint8Array {
  const bytes = [0xff, 0xd8];
  for (const [marker, body] of [...segments, [0xda, [1, 1, 0, 0, 63, 0]] as [number, number[]]]) bytes.push(0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body);
  return Uint8Array.from([...bytes, 0, 0xff, 0xd9]);
}
/** SOFn: precision, height, width, components (id, sampling 1×1, table 0 each). */
const sof = (marker: number, precision: number, height: number, width: number, components: number): [number, number[]] => [
  marker,
  [precision, height >> 8, height & 0xff, width >> 8, width & 0xff, components, ...Array.from({ length: components }, (_, i) => [i + 1, 0x11, 0]).flat()],
];
const ADOBE: [number, number[]] = [0xee, [...Buffer.from('Adobe'), 0, 100, 0, 0, 0, 0, 2]];

/** A WebP header whose first chunk is `chunk` with `body` (the RIFF size covers it). */
function webpChunk(chunk: string, body: number[]): Uint8Array {
  const data = Uint8Array.from([...Buffer.from(`WEBP${chunk}`, 'latin1'), body.length & 0xff, (body.length >> 8) & 0xff, 0, 0, ...body]);
  return Uint8Array.from([...Buffer.from('RIFF'), data.length & 0xff, (data.length >> 8) & 0xff, 0, 0, ...data]);
}

describe('image files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'image-file-test-'));
  });
  afterAll(() => rm(dir, { recursive: true }));

  it('JPEG: decodes what jpeg-js decodes, close to the source at quality 100; the name does not matter', async () => {
    const source = gradient(40, 24);
    const bytes = encodeJpeg(source);
    const path = join(dir, 'photo.png'); // a JPEG under a PNG's name: the bytes decide
    await writeFile(path, bytes);
    const image = await readImage(path);
    expect([image.width, image.height]).toEqual([40, 24]);
    expect(image.data).toEqual(decodeJpegJs(bytes).data);
    // Quality 100 on a smooth gradient: only DCT rounding and the YCbCr round trip, a few levels.
    expect(maxAbsDiff(image.data, source.data)).toBeLessThanOrEqual(4);
  });

  it('progressive JPEG: the same pixels as the baseline file it was losslessly transcoded from', async () => {
    // test/fixtures/README.md: jpegtran -progressive of this very baseline file.
    const progressive = await readFile(`${FIXTURES}images/progressive.jpg`);
    expect(progressive.includes(Buffer.of(0xff, 0xc2)), 'an SOF2 (progressive) frame').toBe(true);
    const baseline = encodeJpeg(gradient(40, 24), 90);
    const image = await decodeImage(progressive, 'progressive.jpg');
    // Same DCT coefficients, same decoder: bit for bit.
    expect(image).toEqual(decodeJpegJs(baseline));
  });

  it('JPEG with EXIF orientation 6 decodes turned clockwise (the top of the picture on the right)', async () => {
    const source = halves(16, 8);
    const upright = await decodeImage(encodeJpeg(source), 'upright.jpg');
    const turned = await decodeImage(encodeJpeg(source, 100, 6), 'turned.jpg');
    expect([turned.width, turned.height]).toEqual([8, 16]);
    // Same coded pixels, placed turned: output (x, y) is the upright (y, h − 1 − x).
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 8; x++) {
        const from = (((8 - 1 - x) * 16 + y) * 3);
        expect(Array.from(turned.data.subarray((y * 8 + x) * 3, (y * 8 + x) * 3 + 3)), `(${x}, ${y})`).toEqual(Array.from(upright.data.subarray(from, from + 3)));
      }
    }
    // The red (top) half is now the right half: red channel high there, blue low.
    const pixel = (x: number, y: number) => Array.from(turned.data.subarray((y * 8 + x) * 3, (y * 8 + x) * 3 + 3));
    expect(pixel(7, 0)[0]).toBeGreaterThan(200);
    expect(pixel(0, 15)[2]).toBeGreaterThan(200);
  });

  it('all eight EXIF orientations, as PIL.ImageOps.exif_transpose gives them (lossless, on a PNG with eXIf)', async () => {
    // 3×2, pixels a–f (grey levels 1–6): a b c / d e f.
    const source: RgbImage = { width: 3, height: 2, data: Uint8Array.from([1, 2, 3, 4, 5, 6].flatMap((v) => [v, v, v])) };
    const expected: Record<number, [number, number, number[]]> = {
      1: [3, 2, [1, 2, 3, 4, 5, 6]],
      2: [3, 2, [3, 2, 1, 6, 5, 4]], // FLIP_LEFT_RIGHT
      3: [3, 2, [6, 5, 4, 3, 2, 1]], // ROTATE_180
      4: [3, 2, [4, 5, 6, 1, 2, 3]], // FLIP_TOP_BOTTOM
      5: [2, 3, [1, 4, 2, 5, 3, 6]], // TRANSPOSE
      6: [2, 3, [4, 1, 5, 2, 6, 3]], // ROTATE_270 (clockwise)
      7: [2, 3, [6, 3, 5, 2, 4, 1]], // TRANSVERSE
      8: [2, 3, [3, 6, 2, 5, 1, 4]], // ROTATE_90 (anticlockwise)
    };
    for (const [orientation, [width, height, grey]] of Object.entries(expected)) {
      const image = await decodeImage(await pngWithOrientation(source, Number(orientation)), `o${orientation}.png`);
      expect([image.width, image.height, Array.from(image.data.filter((_, i) => i % 3 === 0))], `orientation ${orientation}`).toEqual([width, height, grey]);
    }
  });

  it('WebP: lossless equals the source pixels, alpha dropped; lossy decodes near them', async () => {
    const random = Uint8Array.from({ length: 23 * 17 * 3 }, (_, i) => (i * 7919) % 251);
    const source: RgbImage = { width: 23, height: 17, data: random };
    // Some pixels transparent, some half: their colours are kept (exact), alpha is dropped.
    const lossless = await encodeWebp(source, { lossless: 1, exact: 1 }, Uint8Array.from({ length: 23 * 17 }, (_, p) => [255, 128, 0][p % 3]!));
    expect(String.fromCharCode(...lossless.subarray(12, 16))).toBe('VP8L');
    const image = await decodeImage(lossless, 'x.webp');
    expect([image.width, image.height]).toEqual([23, 17]);
    expect(image.data).toEqual(source.data);
    const smooth = gradient(32, 16);
    const lossy = await encodeWebp(smooth, { quality: 100 });
    expect(String.fromCharCode(...lossy.subarray(12, 16))).toBe('VP8 ');
    const decoded = await decodeImage(lossy, 'y.webp');
    expect([decoded.width, decoded.height]).toEqual([32, 16]);
    // Lossy VP8, even at quality 100, keeps chroma at 4:2:0: this gradient's red and green change
    // inside each 2×2 block, so it comes back within 16 levels (11 here), not exactly.
    expect(maxAbsDiff(decoded.data, smooth.data)).toBeLessThanOrEqual(16);
  });

  it('anything else is one line naming the file and the problem, checked from the header before decoding', async () => {
    const good = encodeJpeg(gradient(16, 16), 90);
    const lossless = await encodeWebp(gradient(8, 8), { lossless: 1 });
    const cases: Array<[Uint8Array, string]> = [
      [Buffer.from('GIF89a\x01\x00\x01\x00'), 'f: not an image this can read (GIF); PNG, JPEG and WebP are supported'],
      [Buffer.from('BM\x00\x00'), 'f: not an image this can read (BMP); PNG, JPEG and WebP are supported'],
      [Buffer.from('\0\0\0\x1cftypheic\0\0\0\0'), 'f: not an image this can read (HEIF); PNG, JPEG and WebP are supported'],
      [Buffer.from('not a picture'), 'f: not an image this can read (an unknown format); PNG, JPEG and WebP are supported'],
      [new Uint8Array(0), 'f: not an image this can read (an empty file); PNG, JPEG and WebP are supported'],
      // JPEG: cut in the header, cut in the data, damaged data, and what jpeg-js cannot decode.
      [good.subarray(0, 100), 'f: truncated JPEG (segment 0xdb of 132 bytes at byte 20 runs past the end, 100 bytes)'],
      [good.subarray(0, good.byteLength - 40), 'f: truncated JPEG (no end-of-image marker)'],
      [good.slice().fill(0xff, good.byteLength - 60, good.byteLength - 2), 'f: corrupt JPEG data (unexpected marker: ffff)'],
      [jpegSegments(sof(0xc0, 8, 0, 16, 3)), 'f: unsupported JPEG size 16×0'],
      [jpegSegments(sof(0xc0, 12, 16, 16, 3)), 'f: unsupported 12-bit JPEG (8-bit samples only)'],
      [jpegSegments(sof(0xc3, 8, 16, 16, 3)), 'f: unsupported JPEG coding (lossless); baseline and progressive JPEGs are supported'],
      [jpegSegments(sof(0xc9, 8, 16, 16, 3)), 'f: unsupported JPEG coding (arithmetic-coded); baseline and progressive JPEGs are supported'],
      [jpegSegments(sof(0xc0, 8, 16, 16, 4)), 'f: unsupported JPEG: 4 colour components (CMYK) without an Adobe marker'],
      // With Adobe's marker CMYK passes the header to jpeg-js, which finds no tables here.
      [jpegSegments(ADOBE, sof(0xc0, 8, 16, 16, 4)), 'f: corrupt JPEG data ('],
      [jpegSegments(sof(0xc0, 8, 16, 16, 2)), 'f: unsupported JPEG: 2 colour components (1, 3 or 4 supported)'],
      [jpegSegments(sof(0xc2, 8, 65535, 65535, 3)), 'f: too large (65535×65535 pixels; at most 67108864 pixels)'],
      // WebP: cut, animated, too large, a damaged bitstream.
      [lossless.subarray(0, lossless.byteLength - 4), `f: truncated WebP (the file ends at byte ${lossless.byteLength - 4}, its RIFF header says ${lossless.byteLength})`],
      [webpChunk('VP8X', [0x02, 0, 0, 0, 7, 0, 0, 7, 0, 0]), 'f: unsupported animated WebP (a still image is needed)'],
      [webpChunk('VP8X', [0, 0, 0, 0, 0xff, 0x3f, 0, 0xff, 0x3f, 0]), 'f: too large (16384×16384 pixels; at most 67108864 pixels)'],
      [webpChunk('VP8L', [0x2f, 7, 0xc0, 1, 0, 0x55, 0x55, 0x55, 0x55, 0x55]), 'f: corrupt WebP data (libwebp could not decode it'],
      [webpChunk('ALPH', new Array(10).fill(0)), 'f: corrupt WebP (unknown first chunk "ALPH")'],
    ];
    for (const [bytes, message] of cases) {
      const error = await decodeImage(bytes, 'f').then(() => null, (e: Error) => e);
      expect(error, `${message}: ${bytes.byteLength} bytes`).toBeInstanceOf(UsageError);
      expect(error!.message, message).toContain(message);
      expect(error!.message, message).not.toContain('\n');
    }
    // A PNG's errors name it too; its size cap is the same.
    const png = await encodePng(gradient(4, 4));
    await expect(decodeImage(png.subarray(0, 40), 'f.png')).rejects.toThrow('f.png: invalid PNG: truncated');
    await expect(decodeImage(png, 'f.png', { maxPixels: 15 })).rejects.toThrow('f.png: too large (4×4 pixels; at most 15 pixels)');
    await expect(decodeImage(good, 'f.jpg', { maxBytes: 100 })).rejects.toThrow(`f.jpg: too large (${good.byteLength} bytes; at most 100)`);
  });

  it('readImage: a missing file, a folder, a file over the byte cap (refused from its size, before reading it)', async () => {
    await expect(readImage(join(dir, 'absent.jpg'))).rejects.toThrow(`${join(dir, 'absent.jpg')}: cannot read (ENOENT)`);
    await mkdir(join(dir, 'folder.png'));
    await expect(readImage(join(dir, 'folder.png'))).rejects.toThrow(`${join(dir, 'folder.png')}: not a regular file (a directory)`);
    // Sparse: takes no disk space; reading it would take 256 MiB of memory.
    const huge = join(dir, 'huge.jpg');
    await writeFile(huge, '');
    await truncate(huge, MAX_IMAGE_BYTES + 1);
    await expect(readImage(huge)).rejects.toThrow(`${huge}: too large (${MAX_IMAGE_BYTES + 1} bytes; at most ${MAX_IMAGE_BYTES})`);
  });
});
