// safetensors: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}},
// then the data section. Parsed strictly: nothing in a malformed file is trusted, and every
// error names the file and the tensor. Only the header is read up front; tensor data is read
// on demand, one tensor at a time.

import type { ByteReader } from './byte-reader.js';
import type { HostTensor, TensorEntry, TensorSource } from './tensor-source.js';
import type { HostFormat } from '../tensor.js';

/** Element sizes of the dtypes we read. Weights must be F32/F16/BF16, or I8 in a component
 *  whose config says "quantization" (io/q8-source.ts); the other integer types appear in
 *  reference data (token ids, 8-bit images). */
const DTYPE_BYTES = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, I8: 1 } as const;
export type SafetensorsDType = keyof typeof DTYPE_BYTES;

export interface RawEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute byte range in the file. */
  readonly begin: number;
  readonly end: number;
}

/** The reference implementation's cap (safetensors' MAX_HEADER_SIZE): a real header is < 1 MB. */
const MAX_HEADER_BYTES = 100_000_000;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseHeader(json: Uint8Array, fileSize: number, description: string): Map<string, RawEntry> {
  const fail: (msg: string) => never = (msg) => {
    throw new Error(`${description}: invalid safetensors header: ${msg}`);
  };
  let text = '';
  let header: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    header = JSON.parse(text);
  } catch (e) {
    fail(`not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isObject(header)) fail(`not a JSON object (found ${Array.isArray(header) ? 'an array' : typeof header === 'object' ? 'null' : `a ${typeof header}`})`);
  // JSON.parse keeps the last of repeated keys; a file with two headers for one name is corrupt.
  const dup = duplicateKey(text);
  if (dup) {
    const where = dup.within === null ? '' : dup.within === '__metadata__' ? '__metadata__: ' : `tensor ${dup.within}: `;
    fail(dup.within === null ? `tensor ${dup.key} appears twice` : `${where}key ${JSON.stringify(dup.key)} appears twice`);
  }

  const dataStart = 8 + json.byteLength;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, RawEntry>();
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(value)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(value)) if (typeof v !== 'string') fail(`__metadata__.${k} is not a string (${JSON.stringify(v)})`);
      continue;
    }
    const bad: (msg: string) => never = (msg) => fail(`tensor ${name}: ${msg}`);
    if (!isObject(value)) bad('not an object');
    const t: { dtype?: unknown; shape?: unknown; data_offsets?: unknown } = value;
    if (typeof t.dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, t.dtype)) bad(`unsupported dtype ${JSON.stringify(t.dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    const dtype = t.dtype as SafetensorsDType;
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`bad shape ${JSON.stringify(t.shape)} (want non-negative integers)`);
    const shape = t.shape as number[];
    const offsets = t.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`bad data_offsets ${JSON.stringify(offsets)} (want [begin, end], non-negative integers)`);
    }
    const [b, e] = offsets as [number, number];
    const bytes = shape.reduce((a, d) => a * d, DTYPE_BYTES[dtype]);
    if (!Number.isSafeInteger(bytes)) bad(`shape ${JSON.stringify(shape)} is too large`);
    if (e < b) bad(`data_offsets end ${e} < begin ${b}`);
    if (e - b !== bytes) bad(`${dtype} ${JSON.stringify(shape)} needs ${bytes} bytes but data_offsets [${b}, ${e}] span ${e - b}`);
    if (e > dataSize) bad(`data_offsets [${b}, ${e}] run past the end of the data section (${dataSize} bytes)`);
    entries.set(name, { name, dtype, shape, begin: dataStart + b, end: dataStart + e });
  }
  const sorted = [...entries.values()].filter((r) => r.end > r.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < sorted.length; i++) {
    const [p, q] = [sorted[i - 1]!, sorted[i]!];
    if (q.begin < p.end) fail(`tensors ${p.name} [${p.begin - dataStart}, ${p.end - dataStart}] and ${q.name} [${q.begin - dataStart}, ${q.end - dataStart}] overlap`);
  }
  return entries;
}

/** The first key repeated within one JSON object of `text` (already validated by JSON.parse),
 *  with the top-level key it sits under (null: a top-level key itself). One linear scan. */
function duplicateKey(text: string): { key: string; within: string | null } | null {
  interface Frame {
    readonly keys: Set<string> | null; // null for arrays
    expectKey: boolean;
  }
  const stack: Frame[] = [];
  let topKey: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const top = stack[stack.length - 1];
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (; text.charCodeAt(j) !== 0x22; j++) {
        if (text.charCodeAt(j) === 0x5c /* \ */) {
          escaped = true;
          j++;
        }
      }
      if (top?.keys && top.expectKey) {
        const key: string = escaped ? JSON.parse(text.slice(i, j + 1)) : text.slice(i + 1, j);
        if (top.keys.has(key)) return { key, within: stack.length === 1 ? null : topKey };
        top.keys.add(key);
        top.expectKey = false;
        if (stack.length === 1) topKey = key;
      }
      i = j;
    } else if (c === 0x7b /* { */) stack.push({ keys: new Set(), expectKey: true });
    else if (c === 0x5b /* [ */) stack.push({ keys: null, expectKey: false });
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x2c /* , */ && top?.keys) top.expectKey = true;
  }
  return null;
}

export class SafetensorsFile implements TensorSource {
  readonly entries: ReadonlyMap<string, TensorEntry>;

  private constructor(private readonly reader: ByteReader, readonly raw: ReadonlyMap<string, RawEntry>) {
    const floats = new Map<string, TensorEntry>();
    for (const r of raw.values()) {
      if (r.dtype === 'F32' || r.dtype === 'F16' || r.dtype === 'BF16') {
        floats.set(r.name, { name: r.name, format: r.dtype.toLowerCase() as HostFormat, shape: r.shape });
      }
    }
    this.entries = floats;
  }

  get description(): string {
    return this.reader.description;
  }

  /** Takes `reader` over: closes it if the header is not a valid one. */
  static async open(reader: ByteReader): Promise<SafetensorsFile> {
    try {
      return new SafetensorsFile(reader, await SafetensorsFile.readHeader(reader));
    } catch (e) {
      await reader.close?.();
      throw e;
    }
  }

  private static async readHeader(reader: ByteReader): Promise<Map<string, RawEntry>> {
    const where = reader.description;
    if (reader.size < 8) throw new Error(`${where}: not a safetensors file (${reader.size} bytes, shorter than the 8-byte header length)`);
    const lenBytes = await reader.read(0, 8);
    const len = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
    if (len > BigInt(reader.size - 8)) {
      throw new Error(`${where}: invalid safetensors header: header length ${len} runs past the end of the file (${reader.size} bytes)`);
    }
    if (len > BigInt(MAX_HEADER_BYTES)) {
      throw new Error(`${where}: invalid safetensors header: header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte cap`);
    }
    const json = await reader.read(8, Number(len));
    return parseHeader(json, reader.size, where);
  }

  /** The raw bytes of any tensor (integer reference data included), or of `count` elements
   *  from element `start` of it (row-major), e.g. one of q, k, v stacked in one tensor. */
  async readBytes(name: string, elements?: { readonly start: number; readonly count: number }): Promise<{ entry: RawEntry; bytes: Uint8Array }> {
    const entry = this.raw.get(name);
    if (!entry) throw new Error(`${this.description}: no tensor named ${name}`);
    if (!elements) return { entry, bytes: await this.reader.read(entry.begin, entry.end - entry.begin) };
    const size = DTYPE_BYTES[entry.dtype];
    const begin = entry.begin + elements.start * size;
    const length = elements.count * size;
    if (elements.start < 0 || elements.count < 0 || begin + length > entry.end) {
      throw new Error(`${this.description}: elements [${elements.start}, ${elements.start + elements.count}) are outside tensor ${name} [${entry.shape.join(', ')}]`);
    }
    return { entry, bytes: await this.reader.read(begin, length) };
  }

  async read(name: string, elements?: { readonly start: number; readonly count: number }): Promise<HostTensor> {
    const { entry, bytes } = await this.readBytes(name, elements);
    const format = this.entries.get(name)?.format;
    if (!format) throw new Error(`${this.description}: tensor ${name} is ${entry.dtype}; weights must be F32, F16 or BF16`);
    const size = DTYPE_BYTES[entry.dtype];
    // The data section need not be aligned: view the bytes in place when they are, copy when not.
    const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
    const n = aligned.byteLength / size;
    return { format, data: format === 'f32' ? new Float32Array(aligned.buffer, aligned.byteOffset, n) : new Uint16Array(aligned.buffer, aligned.byteOffset, n) };
  }

  async close(): Promise<void> {
    await this.reader.close?.();
  }
}

export interface TensorToWrite {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Little-endian element bytes, row-major (a typed array of the dtype). */
  readonly data: ArrayBufferView;
}

/** A tensor's place in a file to write: its name, dtype and shape. */
export type TensorSpec = Omit<TensorToWrite, 'data'>;

/** Bytes of a `dtype` tensor of `shape`. */
export function tensorBytes(dtype: SafetensorsDType, shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, DTYPE_BYTES[dtype]);
}

/** The header of a file of `tensors` packed in the given order (its 8-byte length, then the
 *  JSON padded with spaces to 8 bytes like the reference writer): the data follows it. */
export function encodeSafetensorsHeader(tensors: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): Uint8Array<ArrayBuffer> {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const t of tensors) {
    const bytes = tensorBytes(t.dtype, t.shape);
    if (Object.hasOwn(header, t.name)) throw new Error(`encodeSafetensors: tensor ${t.name} given twice`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/** A whole safetensors file in memory (tensors saved by the CLI, test files). */
export function encodeSafetensors(tensors: readonly TensorToWrite[], metadata?: Readonly<Record<string, string>>): Uint8Array<ArrayBuffer> {
  for (const t of tensors) {
    const bytes = tensorBytes(t.dtype, t.shape);
    if (t.data.byteLength !== bytes) throw new Error(`encodeSafetensors: tensor ${t.name} ${t.dtype} [${t.shape.join(', ')}] needs ${bytes} bytes, got ${t.data.byteLength}`);
  }
  const header = encodeSafetensorsHeader(tensors, metadata);
  const out = new Uint8Array(header.byteLength + tensors.reduce((sum, t) => sum + t.data.byteLength, 0));
  out.set(header);
  let at = header.byteLength;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}
