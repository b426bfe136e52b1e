// Test images in the formats --image reads, made here from known pixels: JPEG with jpeg-js's
// encoder (optionally with an EXIF orientation), WebP with @jsquash/webp's (libwebp).

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import jpeg from 'jpeg-js';
import type { RgbImage } from '../../src/image.js';

/** RGB → RGBA with alpha 255, what the encoders take. */
export function rgbToRgba(image: RgbImage): Uint8Array {
  const out = new Uint8Array(image.width * image.height * 4).fill(255);
  for (let p = 0; p < image.width * image.height; p++) out.set(image.data.subarray(3 * p, 3 * p + 3), 4 * p);
  return out;
}

/** An EXIF block (TIFF, little-endian) with only IFD0's Orientation tag. */
export const exifTiff = (orientation: number): Uint8Array =>
  Uint8Array.of(0x49, 0x49, 0x2a, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0, 0, 0, 0, 0);

export function encodeJpeg(image: RgbImage, quality = 100, orientation?: number): Uint8Array {
  const exif = orientation ? { exifBuffer: Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), exifTiff(orientation)]) } : {};
  return jpeg.encode({ width: image.width, height: image.height, data: rgbToRgba(image), ...exif } as jpeg.RawImageData<Uint8Array>, quality).data;
}

/** jpeg-js's own decoding of a JPEG, as RGB. */
export const decodeJpegJs = (bytes: Uint8Array): RgbImage => jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false });

let webpEncoder: Promise<(image: ImageData, options: Record<string, number>) => Promise<ArrayBuffer>> | null = null;

/** WebP (libwebp's options: { lossless: 1, exact: 1 }, { quality: 90 }, …), with an alpha value
 *  per pixel if given (else opaque). The package's own loader fetches its .wasm by URL, which
 *  Node cannot, so it gets the compiled module. */
export async function encodeWebp(image: RgbImage, options: Record<string, number>, alpha?: Uint8Array): Promise<Uint8Array> {
  webpEncoder ??= (async () => {
    const { default: encode, init } = await import('@jsquash/webp/encode.js');
    await init(await WebAssembly.compile(await readFile(createRequire(import.meta.url).resolve('@jsquash/webp/codec/enc/webp_enc.wasm'))));
    return encode;
  })();
  const encode = await webpEncoder;
  const data = new Uint8ClampedArray(rgbToRgba(image));
  alpha?.forEach((a, p) => (data[4 * p + 3] = a));
  return new Uint8Array(await encode({ width: image.width, height: image.height, data, colorSpace: 'srgb' }, options));
}
