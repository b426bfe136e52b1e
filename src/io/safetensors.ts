// safetensors: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}},
// then the data section. Parsed strictly: nothing in a malformed file is trusted.

import type { ByteReader } from './byte-reader.js';
import type { HostTensor, TensorEntry, TensorSource } from './tensor-source.js';
import type { HostFormat } from '../tensor.js';

/** Element sizes of the dtypes we read. Weights must be F32/F16/BF16; the integer types
 *  appear in reference data (token ids, 8-bit images). */
const DTYPE_BYTES = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 } as const;
export type SafetensorsDType = keyof typeof DTYPE_BYTES;

export interface RawEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute byte range in the file. */
  readonly begin: number;
  readonly end: number;
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export function parseHeader(json: Uint8Array, fileSize: number, description: string): Map<string, RawEntry> {
  const fail = (msg: string): never => {
    throw new Error(`${description}: invalid safetensors header: ${msg}`);
  };
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (e) {
    fail(`not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('not a JSON object');
  const dataStart = 8 + json.byteLength;
  const entries = new Map<string, RawEntry>();
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(value as object)) if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`);
      continue;
    }
    const t = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== 'object' || t === null) fail(`tensor ${name}: not an object`);
    if (typeof t.dtype !== 'string' || !(t.dtype in DTYPE_BYTES)) fail(`tensor ${name}: unsupported dtype ${JSON.stringify(t.dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    const dtype = t.dtype as SafetensorsDType;
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${name}: bad shape ${JSON.stringify(t.shape)}`);
    const shape = t.shape as number[];
    const offsets = t.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${name}: bad data_offsets ${JSON.stringify(offsets)}`);
    const [b, e] = offsets as [number, number];
    const count = shape.reduce((a, d) => a * d, 1);
    if (!Number.isSafeInteger(count * DTYPE_BYTES[dtype])) fail(`tensor ${name}: shape ${JSON.stringify(shape)} is too large`);
    if (e < b) fail(`tensor ${name}: data_offsets end ${e} < begin ${b}`);
    if (e - b !== count * DTYPE_BYTES[dtype]) fail(`tensor ${name}: ${dtype} ${JSON.stringify(shape)} needs ${count * DTYPE_BYTES[dtype]} bytes but data_offsets span ${e - b}`);
    if (dataStart + e > fileSize) fail(`tensor ${name}: data_offsets [${b}, ${e}] run past the end of the file (data section is ${fileSize - dataStart} bytes)`);
    entries.set(name, { name, dtype, shape, begin: dataStart + b, end: dataStart + e });
  }
  const sorted = [...entries.values()].filter((r) => r.end > r.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) fail(`tensors ${sorted[i - 1]!.name} and ${sorted[i]!.name} overlap`);
  }
  return entries;
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

  static async open(reader: ByteReader): Promise<SafetensorsFile> {
    const where = reader.description;
    if (reader.size < 8) throw new Error(`${where}: not a safetensors file (${reader.size} bytes, shorter than the 8-byte header length)`);
    const lenBytes = await reader.read(0, 8);
    const len = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
    if (len > BigInt(Math.min(MAX_HEADER_BYTES, reader.size - 8))) {
      throw new Error(`${where}: invalid safetensors header: header length ${len} exceeds ${len > BigInt(reader.size - 8) ? `the file (${reader.size} bytes)` : `the ${MAX_HEADER_BYTES}-byte cap`}`);
    }
    const json = await reader.read(8, Number(len));
    return new SafetensorsFile(reader, parseHeader(json, reader.size, where));
  }

  /** The raw bytes of any tensor (integer reference data included). */
  async readBytes(name: string): Promise<{ entry: RawEntry; bytes: Uint8Array }> {
    const entry = this.raw.get(name);
    if (!entry) throw new Error(`${this.description}: no tensor named ${name}`);
    return { entry, bytes: await this.reader.read(entry.begin, entry.end - entry.begin) };
  }

  async read(name: string): Promise<HostTensor> {
    const { entry, bytes } = await this.readBytes(name);
    const format = this.entries.get(name)?.format;
    if (!format) throw new Error(`${this.description}: tensor ${name} is ${entry.dtype}; weights must be F32, F16 or BF16`);
    // Copy into an aligned buffer: the data section need not be 4-byte aligned.
    const aligned = bytes.slice().buffer;
    return { format, data: format === 'f32' ? new Float32Array(aligned) : new Uint16Array(aligned) };
  }

  async close(): Promise<void> {
    await this.reader.close?.();
  }
}
