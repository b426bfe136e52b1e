// Single-file (SGM) checkpoints: the tiny fixture's tiny_sdxl.safetensors / _fp16 opened with
// the tiny folder's configs give the folder's tensors bit for bit (the pipeline runs on them:
// single-file-cli.test.ts); the built-in configs accept the real file's layout; from a path, a
// URL and a hub file; every bad file is one error naming it.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { builtinSdxlFs } from '../../src/io/builtin-config.js';
import type { ByteReader } from '../../src/io/byte-reader.js';
import { MODEL_COMPONENTS, ModelFolder } from '../../src/io/model-folder.js';
import { nodeModelFs, openFileReader } from '../../src/io/node-file.js';
import { encodeSafetensors, SafetensorsFile, type SafetensorsDType } from '../../src/io/safetensors.js';
import { openSingleFile } from '../../src/io/single-file.js';
import { openModel } from '../../src/node/model-source.js';
import { clipVocabFromMerges } from '../../src/pipeline/tokenizer.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';
import { gitBlobId, startHubServer } from '../helpers/hub-server.js';
import { tinySgmFile } from '../helpers/sgm-file.js';
import { startServer } from './http-server.js';

const SINGLE = `${FIXTURES}tiny-sdxl-extensions/single-file/`;

let tmp: string;
/** tiny_sdxl.safetensors and tiny_sdxl_fp16.safetensors, rebuilt byte for byte (test/helpers/sgm-file.ts). */
let FP32: string;
let FP16: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-single-file-'));
  FP32 = await tinySgmFile('fp32');
  FP16 = await tinySgmFile('fp16');
});
afterAll(async () => rm(tmp, { recursive: true, force: true }));

const openTiny = async (path: string): Promise<ModelFolder> => openSingleFile(await openFileReader(path), nodeModelFs(TINY));

/** Every tensor of the single file's sources equals the folder's, byte for byte. */
async function expectSameTensors(single: ModelFolder, folder: ModelFolder): Promise<void> {
  const differ: string[] = [];
  const bytes = (d: ArrayBufferView): Buffer => Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  for (const c of MODEL_COMPONENTS) {
    const [a, b] = [single.weights(c), folder.weights(c)];
    expect([...a.entries.keys()].sort(), c).toEqual([...b.entries.keys()].sort());
    for (const [name, entry] of b.entries) {
      const [x, y] = [await a.read(name), await b.read(name)];
      if (JSON.stringify(a.entries.get(name)) !== JSON.stringify(entry) || x.format !== y.format || !bytes(x.data).equals(bytes(y.data))) differ.push(`${c} ${name}`);
    }
  }
  expect(differ).toEqual([]);
}

describe('a single file as the four diffusers components', () => {
  for (const [fileOf, variant] of [[() => FP32, 'fp32'], [() => FP16, 'fp16']] as const) {
    it(`${variant}: the folder's ${variant} tensors, bit for bit (renamed, reshaped, q/k/v split, transposed)`, async () => {
      const file = fileOf();
      const [single, folder] = [await openTiny(file), await ModelFolder.open(nodeModelFs(TINY), { variant })];
      try {
        await expectSameTensors(single, folder);
        expect(single.weightFile('unet')).toBe(`${file} (unet)`);
      } finally {
        await Promise.all([single.close(), folder.close()]);
      }
    });
  }

  it('from an http(s) URL (Range reads) and from a hub file org/name/FILE.safetensors (into the HF cache)', async () => {
    const bytes = await readFile(FP32);
    const server = await startServer(async (path) => (path === 'tiny_sdxl.safetensors' ? bytes : null));
    const hub = await startHubServer({ 'tiny/sdxl-single': { files: new Map([['weights/tiny_sdxl.safetensors', bytes]]), commit: gitBlobId(new Uint8Array([1])).padEnd(40, '0') } });
    const folder = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp32' });
    try {
      for (const opened of [
        await openModel(`${server.url}/range/tiny_sdxl.safetensors`),
        await openModel('tiny/sdxl-single/weights/tiny_sdxl.safetensors', { endpoint: hub.url, cacheDir: join(tmp, 'hub') }),
      ]) {
        expect('checkpoint' in opened).toBe(true);
        const single = await openSingleFile((opened as { checkpoint: ByteReader }).checkpoint, nodeModelFs(TINY));
        await expectSameTensors(single, folder);
        await single.close();
      }
      // Cached now: no request the second time.
      const before = hub.requests.length;
      const again = await openModel('tiny/sdxl-single/weights/tiny_sdxl.safetensors', { endpoint: hub.url, cacheDir: join(tmp, 'hub') });
      await (again as { checkpoint: ByteReader }).checkpoint.close?.();
      expect(hub.requests.length).toBe(before);
    } finally {
      await Promise.all([folder.close(), server.close(), hub.close()]);
    }
  });

  it('the built-in configs take the real SDXL-Turbo file: all 2,513 keys (+ ignored extras) placed, none read', async () => {
    const manifest = JSON.parse(await readFile(`${SINGLE}sdxl-turbo-sgm-manifest.json`, 'utf8')) as { keys: Array<{ sgm: string; shape: number[] }> };
    const extras = [
      { sgm: 'conditioner.embedders.0.transformer.text_model.embeddings.position_ids', shape: [1, 77], dtype: 'I64' as const },
      { sgm: 'conditioner.embedders.1.model.logit_scale', shape: [] },
    ];
    const reader = headerOnly([...manifest.keys, ...extras], 'sd_xl_turbo_1.0_fp16.safetensors');
    const folder = await openSingleFile(reader, builtinSdxlFs());
    expect(MODEL_COMPONENTS.map((c) => folder.weights(c).entries.size)).toEqual([196, 517, 1680, 248]);
    expect(folder.weights('text_encoder_2').entries.get('text_model.encoder.layers.31.self_attn.v_proj.weight')!.shape).toEqual([1280, 1280]);
    expect(folder.weights('text_encoder_2').entries.get('text_projection.weight')!.shape).toEqual([1280, 1280]);
    await folder.close();
  });

  it('the built-in tokenizers are the CLIP BPE files (vocab.json rebuilt from merges.txt, exactly)', async () => {
    const fs = builtinSdxlFs();
    expect(await fs.readText('tokenizer/merges.txt')).toBe(await readFile(`${TINY}/tokenizer/merges.txt`, 'utf8'));
    expect(await fs.readText('tokenizer_2/merges.txt')).toBe(await readFile(`${TINY}/tokenizer_2/merges.txt`, 'utf8'));
    const vocab = JSON.parse(await readFile(`${TINY}/tokenizer/vocab.json`, 'utf8')) as Record<string, number>;
    expect(clipVocabFromMerges((await fs.readText('tokenizer/merges.txt'))!)).toEqual(vocab);
    expect(JSON.parse((await fs.readText('tokenizer_2/vocab.json'))!)).toEqual(vocab);
    for (const path of ['tokenizer/special_tokens_map.json', 'tokenizer_2/tokenizer_config.json', 'unet/config.json', 'scheduler/scheduler_config.json']) {
      expect(JSON.parse((await fs.readText(path))!), path).toEqual(JSON.parse(await readFile(`${FIXTURES}sdxl-turbo-layout/${path}`, 'utf8')));
    }
  });
});

/** A safetensors file of these keys and shapes whose data is never read (size only). */
function headerOnly(keys: ReadonlyArray<{ sgm: string; shape: readonly number[]; dtype?: SafetensorsDType }>, description: string): ByteReader {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const { sgm, shape, dtype = 'F16' } of keys) {
    const bytes = shape.reduce((a, d) => a * d, dtype === 'I64' ? 8 : 2);
    header[sgm] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(8 + json.byteLength);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  head.set(json, 8);
  return {
    description,
    size: head.byteLength + offset,
    read: async (at, length) => {
      if (at + length > head.byteLength) throw new Error(`headerOnly: read of tensor data at ${at}`);
      return head.slice(at, at + length);
    },
  };
}

/** The fp32 tiny file re-written with `change` applied to its tensor list. */
async function alteredFile(name: string, change: (tensors: Array<{ name: string; dtype: SafetensorsDType; shape: readonly number[]; data: Uint8Array }>) => void): Promise<string> {
  const file = await SafetensorsFile.open(await openFileReader(FP32));
  const tensors = [];
  for (const key of file.raw.keys()) {
    const { entry, bytes } = await file.readBytes(key);
    tensors.push({ name: key, dtype: entry.dtype, shape: entry.shape, data: bytes });
  }
  await file.close();
  change(tensors);
  const path = join(tmp, name);
  await writeFile(path, encodeSafetensors(tensors));
  return path;
}

describe('a bad single file is one error naming the file and every culprit', () => {
  const expectError = async (path: string, ...culprits: string[]): Promise<void> => {
    const error = await openTiny(path).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    expect(message.startsWith(path)).toBe(true);
    for (const c of culprits) expect(message).toContain(c);
  };

  it('an unknown key (the known non-parameter keys are ignored)', async () => {
    const path = await alteredFile('unknown.safetensors', (t) => {
      t.push({ name: 'model.diffusion_model.input_blocks.1.0.extra.weight', dtype: 'F32', shape: [2], data: new Uint8Array(8) });
      t.push({ name: 'conditioner.embedders.1.model.logit_scale', dtype: 'F32', shape: [], data: new Uint8Array(4) });
      t.push({ name: 'conditioner.embedders.0.transformer.text_model.embeddings.position_ids', dtype: 'I64', shape: [1, 77], data: new Uint8Array(77 * 8) });
    });
    await expectError(path, ': not the SDXL single-file checkpoint the configs describe: 1 unknown (model.diffusion_model.input_blocks.1.0.extra.weight)');
  });

  it('missing keys, by their SGM names (a q/k/v stack once)', async () => {
    const path = await alteredFile('missing.safetensors', (t) => {
      for (const name of ['first_stage_model.decoder.up.0.block.2.conv1.bias', 'conditioner.embedders.1.model.transformer.resblocks.3.attn.in_proj_weight']) {
        t.splice(t.findIndex((x) => x.name === name), 1);
      }
    });
    await expectError(path, '2 missing (conditioner.embedders.1.model.transformer.resblocks.3.attn.in_proj_weight, first_stage_model.decoder.up.0.block.2.conv1.bias)');
  });

  it('a wrong shape, in SGM terms', async () => {
    const path = await alteredFile('shape.safetensors', (t) => {
      const text = t.find((x) => x.name === 'conditioner.embedders.1.model.text_projection')!;
      text.shape = [20, 32]; // transformers' orientation, not OpenCLIP's
      const conv = t.find((x) => x.name === 'first_stage_model.encoder.mid.attn_1.q.weight')!;
      conv.shape = [32, 32]; // Linear, not a 1×1 conv
    });
    await expectError(path, '2 wrong shape (', 'conditioner.embedders.1.model.text_projection is (20, 32), expected (32, 20)', 'first_stage_model.encoder.mid.attn_1.q.weight is (32, 32), expected (32, 32, 1, 1)');
  });

  it('not a safetensors file', async () => {
    const path = join(tmp, 'image.safetensors');
    await writeFile(path, await readFile(`${TINY}/model_index.json`));
    await expectError(path, ': invalid safetensors header: header length');
  });
});
