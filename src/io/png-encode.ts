// PNG encoding shared by Node and the browser (io/png.ts decodes):
// 8-bit RGB, every row Paeth-filtered, deflated with the platform's CompressionStream. Text
// chunks carry the generation parameters as PIL (and so AUTOMATIC1111 / ComfyUI) writes them:
// tEXt when keyword and text are Latin-1, else iTXt (UTF-8, uncompressed).

import type { RgbImage } from '../image.js';

export const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 of a chunk's type and data, as the PNG spec computes it. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

const LATIN1 = /^[\u0001-\u00ff]*$/;
const utf8 = new TextEncoder();

function textChunk(keyword: string, text: string): Uint8Array {
  if (!/^[\u0020-\u007e\u00a1-\u00ff]{1,79}$/.test(keyword) || /^ | $|  /.test(keyword)) throw new Error(`PNG text keyword ${JSON.stringify(keyword)}: 1–79 Latin-1 characters`);
  const key = Uint8Array.from(keyword, (c) => c.charCodeAt(0));
  if (LATIN1.test(text)) return chunk('tEXt', concat([key, Uint8Array.of(0), Uint8Array.from(text, (c) => c.charCodeAt(0))]));
  // keyword, 0, compression flag 0, method 0, empty language tag, 0, empty translated keyword, 0, text
  return chunk('iTXt', concat([key, Uint8Array.of(0, 0, 0, 0, 0), utf8.encode(text)]));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Encodes 8-bit RGB as a PNG with `text` (keyword → text) in chunks before the image data. */
export async function encodePng(image: RgbImage, text: Readonly<Record<string, string>> = {}): Promise<Uint8Array> {
  const { width, height, data } = image;
  if (!(Number.isSafeInteger(width) && Number.isSafeInteger(height) && width > 0 && height > 0) || data.byteLength !== width * height * 3) {
    throw new Error(`encodePng: ${width}×${height} RGB needs ${width * height * 3} bytes, got ${data.byteLength}`);
  }
  const stride = width * 3;
  const filtered = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const row = y * stride;
    const out = y * (stride + 1);
    filtered[out] = 4; // Paeth: predicts from left, up and up-left
    for (let x = 0; x < stride; x++) {
      const left = x >= 3 ? data[row + x - 3]! : 0;
      const up = y > 0 ? data[row - stride + x]! : 0;
      const upLeft = x >= 3 && y > 0 ? data[row - stride + x - 3]! : 0;
      filtered[out + 1 + x] = (data[row + x]! - paeth(left, up, upLeft)) & 0xff;
    }
  }
  const deflated = new Uint8Array(await new Response(new Blob([filtered]).stream().pipeThrough(new CompressionStream('deflate'))).arrayBuffer());
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit, RGB, deflate, adaptive filtering, no interlace
  return concat([
    PNG_SIGNATURE,
    chunk('IHDR', header),
    ...Object.entries(text).map(([k, v]) => textChunk(k, v)),
    chunk('IDAT', deflated),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** The tEXt and iTXt (uncompressed) chunks of a PNG, keyword → text; compressed ones are skipped. */
export function readPngText(png: Uint8Array): Record<string, string> {
  if (png.length < 8 || PNG_SIGNATURE.some((b, i) => png[i] !== b)) throw new Error('not a PNG file (bad signature)');
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out: Record<string, string> = {};
  const latin1 = new TextDecoder('latin1');
  for (let at = 8; at + 12 <= png.length; ) {
    const length = view.getUint32(at);
    const type = latin1.decode(png.subarray(at + 4, at + 8));
    const data = png.subarray(at + 8, at + 8 + length);
    const nul = data.indexOf(0);
    if (type === 'tEXt' && nul > 0) out[latin1.decode(data.subarray(0, nul))] = latin1.decode(data.subarray(nul + 1));
    if (type === 'iTXt' && nul > 0 && data[nul + 1] === 0) {
      // Skip the compression method, the language tag and the translated keyword.
      const lang = data.indexOf(0, nul + 3);
      const translated = data.indexOf(0, lang + 1);
      if (lang > 0 && translated > 0) out[latin1.decode(data.subarray(0, nul))] = new TextDecoder().decode(data.subarray(translated + 1));
    }
    if (type === 'IEND') break;
    at += 12 + length;
  }
  return out;
}
