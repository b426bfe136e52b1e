import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GeneratedImage, type GenerationParameters, type RgbImage } from '../../src/image.js';
import { encodePng, readPngText } from '../../src/io/png-encode.js';
import { decodePng, readPng, writePng } from '../../src/io/png.js';
import { randint, rng } from '../helpers/gpu.js';

/** A PNG built chunk by chunk (for the colour types and chunks pngjs cannot write). */
function rawPng(width: number, height: number, depth: number, colorType: number, rows: Uint8Array[], extra: Array<[string, Uint8Array]> = [], interlace = 0): Uint8Array {
  const chunk = (type: string, data: Uint8Array): Uint8Array => {
    const out = new Uint8Array(12 + data.byteLength);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.byteLength);
    out.set(new TextEncoder().encode(type), 4);
    out.set(data, 8);
    view.setUint32(8 + data.byteLength, crc32(out.subarray(4, 8 + data.byteLength)));
    return out;
  };
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, width);
  new DataView(ihdr.buffer).setUint32(4, height);
  ihdr.set([depth, colorType, 0, 0, interlace], 8);
  const scanlines = Buffer.concat(rows.map((r) => Buffer.concat([Buffer.of(0), r]))); // filter 0 (none)
  const parts = [Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a), chunk('IHDR', ihdr), ...extra.map(([t, d]) => chunk(t, d)), chunk('IDAT', deflateSync(scanlines)), chunk('IEND', new Uint8Array(0))];
  return Buffer.concat(parts);
}

function randomRgb(seed: number, width: number, height: number): RgbImage {
  const random = rng(seed);
  return { width, height, data: Uint8Array.from({ length: width * height * 3 }, () => randint(random, 0, 255)) };
}

describe('PNG', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'png-test-'));
  });
  afterAll(() => rm(dir, { recursive: true }));

  it('round-trips 8-bit RGB of awkward sizes through a file', async () => {
    for (const [w, h] of [[37, 23], [1, 1], [64, 3]] as const) {
      const image = randomRgb(w * 100 + h, w, h);
      const path = join(dir, `${w}x${h}.png`);
      await writePng(path, await encodePng(image));
      const back = await readPng(path);
      expect(back.width).toBe(w);
      expect(back.height).toBe(h);
      expect(back.data).toEqual(image.data);
      // Colour type 2, 8 bits: the format PIL writes for an RGB image; pngjs (another decoder)
      // reads the same pixels.
      const parsed = PNG.sync.read(Buffer.from(await encodePng(image)));
      expect([parsed.colorType, parsed.depth, parsed.alpha]).toEqual([2, 8, false]);
      expect(Uint8Array.from({ length: w * h * 3 }, (_, i) => parsed.data[Math.floor(i / 3) * 4 + (i % 3)]!)).toEqual(image.data);
    }
    await expect(encodePng({ width: 2, height: 2, data: new Uint8Array(11) })).rejects.toThrow('encodePng: 2×2 RGB needs 12 bytes, got 11');
  });

  it('text chunks: tEXt for Latin-1, iTXt for the rest, read back by keyword; pngjs still decodes the file', async () => {
    const image = randomRgb(3, 6, 5);
    const text = { parameters: 'a cat\nSteps: 1, Seed: 7', prompt: 'café, 東京 🐈', empty: '' };
    const png = await encodePng(image, text);
    expect(readPngText(png)).toEqual(text);
    const types: string[] = [];
    for (let at = 8; at < png.length; at += 12 + new DataView(png.buffer, png.byteOffset).getUint32(at)) types.push(new TextDecoder().decode(png.subarray(at + 4, at + 8)));
    expect(types).toEqual(['IHDR', 'tEXt', 'iTXt', 'tEXt', 'IDAT', 'IEND']);
    expect((await decodePng(png, 'text.png')).data).toEqual(image.data);
    expect(PNG.sync.read(Buffer.from(png)).width).toBe(6);
    await expect(encodePng(image, { ['x'.repeat(80)]: 'long keyword' })).rejects.toThrow('1–79 Latin-1 characters');
    expect(() => readPngText(new Uint8Array(4))).toThrow('not a PNG file');
  });

  it("a generated image's png() holds its parameters as AUTOMATIC1111 writes them and one by one; metadata false leaves them out", async () => {
    const parameters: GenerationParameters = { prompt: 'a lighthouse', seed: 42, steps: 2, strength: 0.5, width: 8, height: 16, model: 'stabilityai/sdxl-turbo', batchIndex: 1, batchSize: 2 };
    const rgb = randomRgb(11, 8, 16);
    const image = new GeneratedImage(8, 16, rgb.data, parameters, (bytes) => bytes);
    const text = readPngText(await image.png());
    expect(text).toEqual({
      parameters: 'a lighthouse\nSteps: 2, Sampler: Euler a, CFG scale: 0, Seed: 42, Size: 8x16, Model: stabilityai/sdxl-turbo, Denoising strength: 0.5, Batch size: 2, Batch pos: 1',
      prompt: 'a lighthouse',
      seed: '42',
      steps: '2',
      strength: '0.5',
      width: '8',
      height: '16',
      model: 'stabilityai/sdxl-turbo',
      software: 'sdxl-turbo-webgpu',
    });
    const bare = await image.png({ metadata: false });
    expect(readPngText(bare)).toEqual({});
    expect((await decodePng(bare, 'bare.png')).data).toEqual(rgb.data);
    // RGBA for a canvas: the RGB bytes with alpha 255.
    const rgba = image.rgba();
    expect([rgba.width, rgba.height, rgba.data.length, rgba.data instanceof Uint8ClampedArray]).toEqual([8, 16, 8 * 16 * 4, true]);
    expect(Array.from(rgba.data.subarray(0, 8))).toEqual([...rgb.data.subarray(0, 3), 255, ...rgb.data.subarray(3, 6), 255]);
  });

  it('drops alpha without compositing, expands gray and palettes, keeps a colour-keyed pixel, 16-bit keeps the high byte', async () => {
    const rgba = { width: 5, height: 4, data: Buffer.from(Uint8Array.from({ length: 80 }, (_, i) => (i * 37) % 256)) };
    rgba.data[3] = 0; // fully transparent pixel: its colour stays
    const fromRgba = await decodePng(PNG.sync.write(rgba as PNG, { colorType: 6 }), 'rgba.png');
    expect(fromRgba.data).toEqual(Uint8Array.from({ length: 60 }, (_, i) => rgba.data[Math.floor(i / 3) * 4 + (i % 3)]!));

    const grayAlpha = rawPng(3, 1, 8, 4, [Uint8Array.of(10, 255, 200, 0, 77, 128)]);
    expect((await decodePng(grayAlpha, 'ga.png')).data).toEqual(Uint8Array.of(10, 10, 10, 200, 200, 200, 77, 77, 77));

    const gray2bit = rawPng(4, 1, 2, 0, [Uint8Array.of(0b00011011)]);
    expect((await decodePng(gray2bit, 'g2.png')).data).toEqual(Uint8Array.of(0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255));

    const palette = rawPng(3, 1, 8, 3, [Uint8Array.of(2, 0, 1)], [
      ['PLTE', Uint8Array.of(255, 0, 0, 0, 255, 0, 1, 2, 3)],
      ['tRNS', Uint8Array.of(0, 128, 255)],
    ]);
    expect((await decodePng(palette, 'p.png')).data).toEqual(Uint8Array.of(1, 2, 3, 255, 0, 0, 0, 255, 0));

    // tRNS colour key (RGB 10,20,30): PIL's convert('RGB') keeps the colour, pngjs alone would zero it.
    const keyed = rawPng(2, 1, 8, 2, [Uint8Array.of(10, 20, 30, 40, 50, 60)], [['tRNS', Uint8Array.of(0, 10, 0, 20, 0, 30)]]);
    expect((await decodePng(keyed, 'k.png')).data).toEqual(Uint8Array.of(10, 20, 30, 40, 50, 60));

    // Adam7, 3×2 gray: passes 1, 4, 6 hold one pixel of row 0 each, pass 7 all of row 1.
    const interlaced = rawPng(3, 2, 8, 0, [Uint8Array.of(1), Uint8Array.of(3), Uint8Array.of(2), Uint8Array.of(4, 5, 6)], [], 1);
    expect((await decodePng(interlaced, 'i.png')).data).toEqual(Uint8Array.of(1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6));
    await expect(decodePng(rawPng(3, 2, 8, 0, [Uint8Array.of(1), Uint8Array.of(3), Uint8Array.of(2), Uint8Array.of(4, 5)], [], 1), 'i.png')).rejects.toThrow(
      'i.png: invalid PNG: truncated image data (9 of 10 bytes for 3×2)',
    );

    const rgb16 = rawPng(2, 1, 16, 2, [Uint8Array.of(0x12, 0x34, 0x00, 0xff, 0xff, 0xff, 0x80, 0x00, 0x7f, 0xff, 0x00, 0x80)]);
    expect((await decodePng(rgb16, '16.png')).data).toEqual(Uint8Array.of(0x12, 0x00, 0xff, 0x80, 0x7f, 0x00));
  });

  it('a non-PNG, a truncated or a corrupt file is a clear error naming the file', async () => {
    const good = await encodePng(randomRgb(5, 9, 7));
    const cases: Array<[Uint8Array, string]> = [
      [new TextEncoder().encode('GIF89a, not a png'), 'x.png: invalid PNG: not a PNG file (bad signature)'],
      [new Uint8Array(0), 'x.png: invalid PNG: not a PNG file (bad signature)'],
      [good.subarray(0, 8), 'x.png: invalid PNG: truncated (the file ends at byte 8, before the IEND chunk)'],
      [good.subarray(0, 60), 'x.png: invalid PNG: truncated (chunk "IDAT" of'],
      [good.subarray(0, good.byteLength - 12), `x.png: invalid PNG: truncated (the file ends at byte ${good.byteLength - 12}, before the IEND chunk)`],
      [good.subarray(0, good.byteLength - 2), 'x.png: invalid PNG: truncated (chunk "IEND" of 0 bytes'],
      [rawPng(100000, 100000, 8, 2, []), 'x.png: invalid PNG: unsupported size 100000×100000 (at most 67108864 pixels)'],
    ];
    const badCrc = good.slice();
    const idatCrc = 33 + 8 + new DataView(good.buffer, good.byteOffset).getUint32(33); // after IHDR, IDAT's header and data
    badCrc[idatCrc] = badCrc[idatCrc]! ^ 0xff;
    cases.push([badCrc, 'x.png: invalid PNG: corrupt (CRC mismatch in chunk "IDAT" at byte 33)']);
    // Valid chunks around image data that does not inflate, or inflates to too little.
    cases.push([rawPng(2, 2, 8, 2, [], [['IDAT', Uint8Array.of(1, 2, 3, 4)]]), 'x.png: invalid PNG: corrupt image data (incorrect header check)']);
    cases.push([rawPng(2, 2, 8, 2, [new Uint8Array(6)]), 'x.png: invalid PNG: truncated image data (7 of 14 bytes for 2×2)']);
    cases.push([rawPng(2, 2, 8, 5, []), 'x.png: invalid PNG: unsupported colour type 5 with bit depth 8']);
    for (const [bytes, message] of cases) await expect(decodePng(bytes, 'x.png'), message).rejects.toThrow(message);

    const path = join(dir, 'cut.png');
    await writeFile(path, good.subarray(0, 50));
    await expect(readPng(path)).rejects.toThrow(`${path}: invalid PNG: truncated`);
    await expect(readPng(join(dir, 'absent.png'))).rejects.toThrow(`${join(dir, 'absent.png')}: cannot read (ENOENT)`);
    await expect(writePng(join(dir, 'no/such/dir.png'), good)).rejects.toThrow('no/such/dir.png: cannot write (ENOENT)');
  });
});
