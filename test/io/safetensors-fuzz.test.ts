// Property-based fuzzing of the safetensors reader: whatever a damaged file holds, opening it
// and reading every tensor either works or fails with our Error naming the file — never
// another exception, never a hang, never a read (allocation) larger than the file — and a
// header rewrite is accepted exactly when the format's rules (isValidHeader) accept it.

import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { f32ArrayToF16 } from '../../src/f16.js';
import { memoryReader, type ByteReader } from '../../src/io/byte-reader.js';
import { encodeSafetensors, SafetensorsFile } from '../../src/io/safetensors.js';
import { randn, rng } from '../helpers/gpu.js';

const random = rng(1234);
const VALID = encodeSafetensors(
  [
    { name: 'conv.weight', dtype: 'F32', shape: [3, 2, 1, 1], data: randn(random, 6) },
    { name: 'conv.bias', dtype: 'F16', shape: [3], data: f32ArrayToF16(randn(random, 3)) },
    { name: 'norm.weight', dtype: 'BF16', shape: [5], data: new Uint16Array(5).fill(0x3f80) },
    { name: 'ids', dtype: 'I64', shape: [1, 4], data: new BigInt64Array([0n, 1n, 2n, 3n]) },
    { name: 'image', dtype: 'U8', shape: [2, 3], data: new Uint8Array([0, 255, 7, 8, 9, 10]) },
    { name: 'positions', dtype: 'I32', shape: [2], data: new Int32Array([-1, 1]) },
  ],
  { format: 'pt' },
);
const HEADER_END = 8 + Number(new DataView(VALID.buffer).getBigUint64(0, true));
const HEADER = new TextDecoder().decode(VALID.subarray(8, HEADER_END));

/** Per property: how many cases opened fine, and the kinds of error seen (message without numbers). */
const tally = new Map<string, { ok: number; errors: Map<string, number> }>();

/** Opens and reads everything; returns our error's message, or null when the file was fine. */
async function exercise(property: string, bytes: Uint8Array): Promise<string | null> {
  const t = tally.get(property) ?? { ok: 0, errors: new Map<string, number>() };
  tally.set(property, t);
  let largestRead = 0;
  const inner = memoryReader(bytes, 'fuzz.safetensors');
  const reader: ByteReader = {
    ...inner,
    read: (offset, length) => {
      largestRead = Math.max(largestRead, length);
      return inner.read(offset, length);
    },
  };
  try {
    const file = await SafetensorsFile.open(reader);
    for (const [name, raw] of file.raw) {
      expect(raw.begin).toBeGreaterThanOrEqual(8);
      expect(raw.end).toBeLessThanOrEqual(bytes.byteLength);
      const { bytes: data } = await file.readBytes(name);
      expect(data.byteLength).toBe(raw.end - raw.begin);
      const entry = file.entries.get(name);
      if (entry) {
        const host = await file.read(name);
        expect(host.data.length).toBe(entry.shape.reduce((a, d) => a * d, 1));
      } else await expect(file.read(name)).rejects.toThrow(/fuzz\.safetensors: tensor .* weights must be F32, F16 or BF16/);
    }
    t.ok++;
    return null;
  } catch (e) {
    if (!(e instanceof Error) || !e.message.startsWith('fuzz.safetensors: ')) throw e;
    const kind = e.message.replace(/tensor \S+/g, 'tensor X').replace(/[\d[\],.-]+/g, '#').replace(/\(.*/, '').slice(0, 90);
    t.errors.set(kind, (t.errors.get(kind) ?? 0) + 1);
    return e.message;
  } finally {
    expect(largestRead).toBeLessThanOrEqual(bytes.byteLength);
  }
}

const withHeader = (json: string, lengthField?: bigint): Uint8Array => {
  const header = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + header.byteLength + VALID.byteLength - HEADER_END);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(header.byteLength), true);
  out.set(header, 8);
  out.set(VALID.subarray(HEADER_END), 8 + header.byteLength);
  return out;
};

/** The dtypes the reader supports (a subset of the format's), by element size. */
const ELEMENT_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 };

/**
 * The format's rules as the reader documents them, written independently of it: a JSON object
 * (no duplicate keys) whose __metadata__ maps strings to strings and whose every other entry has
 * a supported dtype, a shape of non-negative integers and data_offsets [begin, end] spanning
 * exactly the shape's bytes inside the data section, no two tensors overlapping. Unknown keys
 * inside an entry are ignored.
 */
function isValidHeader(text: string, dataBytes: number): boolean {
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    return false;
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return false;
  const spans: Array<[number, number]> = [];
  // JSON.parse keeps the last of duplicate keys; the format forbids them (a tensor name twice).
  const occurrences = (key: string): number => text.split(JSON.stringify(key)).length - 1;
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (occurrences(name) > 1) return false;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
    const v = value as Record<string, unknown>;
    if (name === '__metadata__') {
      if (!Object.values(v).every((x) => typeof x === 'string')) return false;
      continue;
    }
    const size = typeof v.dtype === 'string' && Object.hasOwn(ELEMENT_BYTES, v.dtype) ? ELEMENT_BYTES[v.dtype]! : null;
    const ints = (x: unknown): x is number[] => Array.isArray(x) && x.every((d) => Number.isSafeInteger(d) && d >= 0);
    if (size === null || !ints(v.shape) || !ints(v.data_offsets) || v.data_offsets.length !== 2) return false;
    const [begin, end] = v.data_offsets as [number, number];
    if (end - begin !== size * v.shape.reduce((a, d) => a * d, 1) || end > dataBytes) return false;
    spans.push([begin, end]);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return spans.every(([begin], i) => i === 0 || begin >= spans[i - 1]![1]);
}
const DATA_BYTES = VALID.byteLength - HEADER_END;

// Header-level values to splice in: numbers at and past every limit, wrong types, big nesting.
const nasty = fc.oneof(
  fc.integer({ min: -5, max: VALID.byteLength + 5 }),
  fc.constantFrom(2 ** 53, 2 ** 53 + 2, 1e300, -0, 0.5, 2 ** 32, 2 ** 31 - 1),
  fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'U8', 'F64', '__proto__', 'constructor', ''),
  fc.jsonValue({ maxDepth: 3 }),
);

describe('safetensors fuzzing', () => {
  afterAll(() => {
    for (const [property, { ok, errors }] of tally) {
      const total = ok + [...errors.values()].reduce((a, n) => a + n, 0);
      console.log(`${property}: ${total} cases, ${ok} read fine, ${total - ok} rejected (${errors.size} kinds of message)`);
    }
  });

  it('the unmodified file reads', async () => {
    expect(await exercise('unmodified', VALID)).toBeNull();
  });

  it('random byte mutations anywhere', async () => {
    let errors = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(VALID.byteLength - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), async (edits) => {
        const bytes = VALID.slice();
        for (const [at, value] of edits) bytes[at] = value;
        if ((await exercise('byte mutations', bytes)) !== null) errors++;
      }),
      { numRuns: 300, seed: 1, timeout: 2000 },
    );
    expect(errors).toBeGreaterThan(0);
  });

  it('truncations and extensions', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(VALID.byteLength + 16), async (length) => {
        const bytes = new Uint8Array(length);
        bytes.set(VALID.subarray(0, Math.min(length, VALID.byteLength)));
        const message = await exercise('truncations', bytes);
        // Cutting into the header or the last tensor must be caught; trailing bytes are harmless.
        expect(message === null).toBe(length >= VALID.byteLength);
      }),
      { numRuns: 300, seed: 2, timeout: 2000 },
    );
  });

  it('header rewrites: any field of any tensor replaced, and random header length fields', async () => {
    const parsed = JSON.parse(HEADER) as Record<string, Record<string, unknown>>;
    const names = Object.keys(parsed);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...names),
        fc.constantFrom('dtype', 'shape', 'data_offsets', 'extra', 'format'),
        fc.oneof(nasty, fc.array(nasty, { maxLength: 5 })),
        fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { freq: 4 }),
        async (name, field, value, lengthField) => {
          const header = structuredClone(parsed);
          header[name]![field] = value;
          const text = JSON.stringify(header);
          const message = await exercise('field rewrites', withHeader(text, lengthField ?? undefined));
          // A length field other than the header's own cuts the JSON or takes data bytes into it.
          const valid = (lengthField === null || lengthField === BigInt(new TextEncoder().encode(text).byteLength)) && isValidHeader(text, DATA_BYTES);
          expect(message === null, `${name}.${field} = ${JSON.stringify(value)}, length ${lengthField}: ${message}`).toBe(valid);
        },
      ),
      { numRuns: 300, seed: 3, timeout: 2000 },
    );
  });

  it('header text mutations: characters inserted, deleted and replaced in the JSON', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(HEADER.length), fc.nat(3), fc.constantFrom('"', ',', '{', '}', '[', ']', '\\', '0', '-', '9', ':', ' ', 'e', '\u00e9')), { minLength: 1, maxLength: 6 }),
        async (edits) => {
          let text = HEADER;
          for (const [at, remove, insert] of edits) text = text.slice(0, at) + insert + text.slice(at + remove);
          const message = await exercise('JSON text mutations', withHeader(text));
          expect(message === null, `${JSON.stringify(text)}: ${message}`).toBe(isValidHeader(text, DATA_BYTES));
        },
      ),
      { numRuns: 300, seed: 4, timeout: 2000 },
    );
  });
});
