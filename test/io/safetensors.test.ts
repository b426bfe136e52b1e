import { stat } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { f16BitsToF32, f32ArrayToF16 } from '../../src/f16.js';
import { memoryReader, type ByteReader } from '../../src/io/byte-reader.js';
import { openFileReader } from '../../src/io/node-file.js';
import { encodeSafetensors, SafetensorsFile } from '../../src/io/safetensors.js';
import { rng, randn } from '../helpers/gpu.js';
import { TINY } from '../helpers/fixtures.js';

const COMPONENTS: Array<[string, string, number]> = [
  ['text_encoder', 'model', 52],
  ['text_encoder_2', 'model', 69],
  ['unet', 'diffusion_pytorch_model', 840],
  ['vae', 'diffusion_pytorch_model', 248],
];

describe('safetensors: the tiny-sdxl fixture files', () => {
  for (const [component, base, count] of COMPONENTS) {
    it(`${component}: fp32 and fp16 files hold the same tensors, fp16 = fp32 rounded`, async () => {
      const fp32 = await SafetensorsFile.open(await openFileReader(`${TINY}/${component}/${base}.safetensors`));
      const fp16 = await SafetensorsFile.open(await openFileReader(`${TINY}/${component}/${base}.fp16.safetensors`));
      expect(fp32.entries.size).toBe(count);
      expect([...fp16.entries.keys()].sort()).toEqual([...fp32.entries.keys()].sort());
      for (const [name, e] of fp32.entries) {
        expect(e.format).toBe('f32');
        expect(fp16.entries.get(name)!.format).toBe('f16');
        expect(fp16.entries.get(name)!.shape).toEqual(e.shape);
        const a = await fp32.read(name);
        const b = await fp16.read(name);
        expect(a.data).toBeInstanceOf(Float32Array);
        expect(a.data.length).toBe(e.shape.reduce((x, d) => x * d, 1));
        // pipe.to(float16) rounds each float32 to nearest even: bit-exact.
        const rounded = f32ArrayToF16(a.data);
        expect(b.data.length, name).toBe(rounded.length);
        expect(rounded.findIndex((h, i) => h !== b.data[i]), `${name}: first element that differs`).toBe(-1);
      }
      await fp32.close();
      await fp16.close();
    });
  }

  it('reads known values (checked with Python struct on the same files)', async () => {
    const unetPath = `${TINY}/unet/diffusion_pytorch_model.safetensors`;
    const unet = await SafetensorsFile.open(await openFileReader(unetPath));
    expect(unet.entries.get('conv_in.weight')!.shape).toEqual([16, 4, 3, 3]);
    const conv = (await unet.read('conv_in.weight')).data;
    expect(Array.from(conv.subarray(0, 3))).toEqual([-0.06865254789590836, -0.002515456872060895, -0.4708535969257355]);
    const bias = (await unet.read('down_blocks.1.attentions.0.proj_in.bias')).data;
    expect(Array.from(bias.subarray(0, 3))).toEqual([0.08726690709590912, 0.028661644086241722, -0.011692391708493233]);
    // the tensor at the end of the data section
    const last = unet.raw.get('up_blocks.2.resnets.2.time_emb_proj.weight')!;
    expect(last.end).toBe((await stat(unetPath)).size);
    await unet.close();

    const te = await SafetensorsFile.open(await openFileReader(`${TINY}/text_encoder/model.fp16.safetensors`));
    const emb = (await te.read('text_model.embeddings.token_embedding.weight')).data;
    expect(te.entries.get('text_model.embeddings.token_embedding.weight')!.shape).toEqual([49408, 24]);
    expect(Array.from(emb.subarray(0, 3), f16BitsToF32)).toEqual(Array.from(f32ArrayToF16([-0.013473724015057087, -0.13847574591636658, -0.5290416479110718]), f16BitsToF32));
    await te.close();
  });
});

describe('safetensors: writer round trip', () => {
  it('writes what it reads back: dtypes, unaligned data, 0-D and empty tensors, metadata', async () => {
    const random = rng(7);
    const f32 = randn(random, 7 * 5);
    const bf16 = new Uint16Array(new Uint32Array(randn(random, 13).buffer).map((w) => w >>> 16));
    const bytes = encodeSafetensors(
      [
        { name: 'byte', dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) }, // makes what follows unaligned
        { name: 'w', dtype: 'F32', shape: [7, 5], data: f32 },
        { name: 'h', dtype: 'F16', shape: [3], data: f32ArrayToF16([1.5, -2, 65504]) },
        { name: 'b', dtype: 'BF16', shape: [13], data: bf16 },
        { name: 'ids', dtype: 'I64', shape: [2], data: new BigInt64Array([5n, -1n]) },
        { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([3.25]) },
        { name: 'empty', dtype: 'F32', shape: [4, 0], data: new Float32Array(0) },
      ],
      { format: 'pt' },
    );
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLength % 8).toBe(0);
    const file = await SafetensorsFile.open(memoryReader(bytes, 'mem.safetensors'));
    expect([...file.raw.keys()]).toEqual(['byte', 'w', 'h', 'b', 'ids', 'scalar', 'empty']);
    expect([...file.entries.keys()]).toEqual(['w', 'h', 'b', 'scalar', 'empty']);
    expect(file.raw.get('w')!.begin % 4).toBe(3);
    expect((await file.read('w')).data).toEqual(f32);
    expect((await file.read('h')).data).toEqual(new Uint16Array([0x3e00, 0xc000, 0x7bff]));
    expect(await file.read('b')).toEqual({ format: 'bf16', data: bf16 });
    expect(Array.from((await file.read('scalar')).data)).toEqual([3.25]);
    expect((await file.read('empty')).data.length).toBe(0);
    expect(new BigInt64Array((await file.readBytes('ids')).bytes.slice().buffer)).toEqual(new BigInt64Array([5n, -1n]));
    await expect(file.read('ids')).rejects.toThrow('mem.safetensors: tensor ids is I64; weights must be F32, F16 or BF16');
    await expect(file.read('nope')).rejects.toThrow('mem.safetensors: no tensor named nope');
    expect(() => encodeSafetensors([{ name: 'x', dtype: 'F32', shape: [3], data: new Float32Array(2) }])).toThrow('tensor x F32 [3] needs 12 bytes, got 8');
    const one = { name: 'x', dtype: 'U8', shape: [1], data: new Uint8Array(1) } as const;
    expect(() => encodeSafetensors([one, one])).toThrow('tensor x given twice');
  });
});

/** A file with `header` (bytes, JSON text or a value to stringify) and `dataBytes` zeros after it. */
function file(header: unknown, dataBytes = 64, headerLength?: bigint): Uint8Array {
  const json = header instanceof Uint8Array ? header : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  return out;
}

const open = (bytes: Uint8Array): Promise<SafetensorsFile> => SafetensorsFile.open(memoryReader(bytes, 'bad.safetensors'));
const t = (dtype: string, shape: unknown, data_offsets: unknown) => ({ dtype, shape, data_offsets });

describe('safetensors: malformed files give clear errors naming the file and the tensor', () => {
  const cases: Array<[string, Uint8Array, string]> = [
    ['truncated before the header length', new Uint8Array(5), 'bad.safetensors: not a safetensors file (5 bytes, shorter than the 8-byte header length)'],
    ['header length 2^63', file({}, 0, 2n ** 63n), 'bad.safetensors: invalid safetensors header: header length 9223372036854775808 runs past the end of the file (10 bytes)'],
    ['header length past the file', file({ a: t('F32', [1], [0, 4]) }, 4, 1000n), 'header length 1000 runs past the end of the file (66 bytes)'],
    ['truncated inside the header', file({ a: t('F32', [1], [0, 4]) }).subarray(0, 30), 'header length 54 runs past the end of the file (30 bytes)'],
    ['truncated inside the data', file({ a: t('F32', [4], [0, 16]) }, 10), 'tensor a: data_offsets [0, 16] run past the end of the data section (10 bytes)'],
    ['empty header', file('', 0), 'invalid safetensors header: not valid UTF-8 JSON'],
    ['bad JSON', file('{"a": {"dtype": "F32",'), 'invalid safetensors header: not valid UTF-8 JSON'],
    ['bad UTF-8', file(Uint8Array.of(0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d)), 'not valid UTF-8 JSON (The encoded data was not valid for encoding utf-8)'],
    ['JSON array', file('[1, 2]'), 'not a JSON object (found an array)'],
    ['JSON null', file('null'), 'not a JSON object (found null)'],
    ['JSON number', file('42'), 'not a JSON object (found a number)'],
    ['tensor not an object', file({ a: [1, 2] }), 'invalid safetensors header: tensor a: not an object'],
    ['unknown dtype', file({ w: t('F64', [1], [0, 8]) }), 'tensor w: unsupported dtype "F64" (supported: F32, F16, BF16, I64, I32, U8, I8)'],
    ['inherited property as dtype', file({ w: t('toString', [1], [0, 8]) }), 'tensor w: unsupported dtype "toString"'],
    ['missing dtype', file({ w: { shape: [1], data_offsets: [0, 4] } }), 'tensor w: unsupported dtype undefined'],
    ['negative dim', file({ w: t('F32', [-1], [0, 4]) }), 'tensor w: bad shape [-1]'],
    ['fractional dim', file({ w: t('F32', [2.5], [0, 10]) }), 'tensor w: bad shape [2.5]'],
    ['shape not a list', file({ w: t('F32', '4', [0, 16]) }), 'tensor w: bad shape "4"'],
    ['huge shape', file({ w: t('F32', [2 ** 40, 2 ** 40], [0, 4]) }), 'tensor w: shape [1099511627776,1099511627776] is too large'],
    ['shape/size mismatch', file({ w: t('F32', [2, 3], [0, 20]) }), 'tensor w: F32 [2,3] needs 24 bytes but data_offsets [0, 20] span 20'],
    ['offsets past the end', file({ w: t('F16', [40], [0, 80]) }), 'tensor w: data_offsets [0, 80] run past the end of the data section (64 bytes)'],
    ['negative offsets', file({ w: t('F32', [1], [-4, 0]) }), 'tensor w: bad data_offsets [-4,0] (want [begin, end], non-negative integers)'],
    ['float offsets', file({ w: t('U8', [1], [0.5, 1.5]) }), 'tensor w: bad data_offsets [0.5,1.5]'],
    ['one offset', file({ w: t('U8', [1], [1]) }), 'tensor w: bad data_offsets [1]'],
    ['offsets beyond 2^53', file('{"w": {"dtype": "U8", "shape": [1], "data_offsets": [9007199254740993, 9007199254740994]}}'), 'tensor w: bad data_offsets [9007199254740992,9007199254740994]'],
    ['end before begin', file({ w: t('F32', [0], [8, 4]) }), 'tensor w: data_offsets end 4 < begin 8'],
    ['overlapping ranges', file({ a: t('F32', [2], [0, 8]), b: t('F32', [2], [4, 12]) }), 'invalid safetensors header: tensors a [0, 8] and b [4, 12] overlap'],
    ['contained range', file({ big: t('U8', [32], [0, 32]), small: t('U8', [4], [8, 12]) }), 'tensors big [0, 32] and small [8, 12] overlap'],
    ['metadata not an object', file({ __metadata__: 'pt' }), '__metadata__ is not an object'],
    ['metadata value not a string', file({ __metadata__: { format: 1 } }), '__metadata__.format is not a string (1)'],
    ['duplicate tensor', file('{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}'), 'invalid safetensors header: tensor a appears twice'],
    ['duplicate tensor, escaped', file('{"ab": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a\\u0062": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}'), 'tensor ab appears twice'],
    ['duplicate field', file('{"a": {"dtype": "U8", "dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'), 'tensor a: key "dtype" appears twice'],
    ['duplicate metadata key', file('{"__metadata__": {"k": "1", "k": "2"}}'), '__metadata__: key "k" appears twice'],
  ];
  for (const [what, bytes, message] of cases) {
    it(what, async () => {
      const error = await open(bytes).then(
        () => null,
        (e: Error) => e,
      );
      expect(error, 'should be rejected').toBeInstanceOf(Error);
      expect(error!.message.startsWith('bad.safetensors: '), error!.message).toBe(true);
      expect(error!.message).toContain(message);
    });
  }

  it('keys that only look like duplicates are accepted (nested keys, strings with quotes and escapes)', async () => {
    const header = '{"__metadata__": {"dtype": "x \\" \\\\", "a": "{\\"a\\": 1}"}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a\\\\": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}';
    const f = await open(file(header, 2));
    expect([...f.raw.keys()]).toEqual(['a', 'a\\']);
  });

  it('refuses a header over the 100 MB cap without reading it', async () => {
    const reads: number[] = [];
    const length = new Uint8Array(8);
    new DataView(length.buffer).setBigUint64(0, 150_000_000n, true);
    const huge: ByteReader = {
      description: 'huge.safetensors',
      size: 4e9,
      read: async (offset, n) => {
        reads.push(n);
        return length.slice(offset, offset + n);
      },
    };
    await expect(SafetensorsFile.open(huge)).rejects.toThrow('huge.safetensors: invalid safetensors header: header length 150000000 exceeds the 100000000-byte cap');
    expect(reads).toEqual([8]);
  });
});
