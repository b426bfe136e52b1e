import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { blobReader } from '../../src/io/blob-reader.js';
import { memoryReader } from '../../src/io/byte-reader.js';
import { openFileReader } from '../../src/io/node-file.js';
import { encodeSafetensors, SafetensorsFile, type TensorToWrite } from '../../src/io/safetensors.js';
import { MergedSource, openShardedSafetensors } from '../../src/io/sharded.js';
import { fetchText, NETWORK, openUrlReader, openUrlReaderIfExists } from '../../src/io/url-reader.js';
import { TINY } from '../helpers/fixtures.js';
import { rng } from '../helpers/gpu.js';
import { startServer, type TestServer } from './http-server.js';

const VAE = `${TINY}/vae/diffusion_pytorch_model.fp16.safetensors`;

/** Every float tensor of a source, by name. */
async function readAll(file: SafetensorsFile | MergedSource): Promise<Map<string, Float32Array | Uint16Array>> {
  const out = new Map<string, Float32Array | Uint16Array>();
  for (const name of file.entries.keys()) out.set(name, (await file.read(name)).data);
  return out;
}

describe('byte readers', () => {
  let bytes: Uint8Array<ArrayBuffer>;
  let expected: Map<string, Float32Array | Uint16Array>;
  beforeAll(async () => {
    bytes = new Uint8Array(await readFile(VAE));
    const file = await SafetensorsFile.open(await openFileReader(VAE));
    expected = await readAll(file);
    await file.close();
  });

  it('node file and memory readers reject reads outside the source', async () => {
    const file = await openFileReader(VAE);
    await expect(file.read(bytes.byteLength - 4, 8)).rejects.toThrow(`${VAE}: read of 8 bytes at ${bytes.byteLength - 4} is outside the ${bytes.byteLength}-byte source`);
    await expect(file.read(-1, 1)).rejects.toThrow('read of 1 bytes at -1 is outside');
    await file.close?.();
    await expect(openFileReader(`${TINY}/nope.safetensors`)).rejects.toThrow(`${TINY}/nope.safetensors: cannot open (ENOENT)`);
    const mem = memoryReader(Uint8Array.of(1, 2, 3), 'mem');
    expect(await mem.read(1, 2)).toEqual(Uint8Array.of(2, 3));
    await expect(mem.read(2, 2)).rejects.toThrow('mem: read of 2 bytes at 2 is outside the 3-byte source');
  });

  it('Blob / File reader: same tensors as the file, slices only', async () => {
    const blob = new Blob([bytes]);
    const file = await SafetensorsFile.open(blobReader(blob));
    expect(file.description).toBe('blob');
    expect(await readAll(file)).toEqual(expected);
    const named = blobReader(new File([bytes], 'vae.fp16.safetensors'));
    expect(named.description).toBe('vae.fp16.safetensors');
    expect(await named.read(3, 5)).toEqual(bytes.slice(3, 8));
    await expect(named.read(bytes.byteLength, 1)).rejects.toThrow(`vae.fp16.safetensors: read of 1 bytes at ${bytes.byteLength} is outside`);
    // A File that can no longer be read (browsers: changed on disk) fails naming it.
    const broken = new Blob([bytes]);
    broken.slice = () => ({ arrayBuffer: () => Promise.reject(new Error('NotReadableError')) }) as unknown as Blob;
    await expect(blobReader(broken, 'picked.safetensors').read(0, 4)).rejects.toThrow('picked.safetensors: cannot read 4 bytes at 0 (NotReadableError)');
  });

  describe('URL reader', () => {
    let server: TestServer;
    let big: Uint8Array;
    beforeAll(async () => {
      big = new Uint8Array(3 << 20).map((_, i) => (i * 2654435761) >>> 24);
      server = await startServer(async (path) => (path === 'vae.safetensors' ? bytes : path === 'big.bin' ? big : path === 'tiny.txt' ? new TextEncoder().encode('hello') : null));
    });
    afterAll(() => server.close());

    it('reads a safetensors file by Range requests: the header, then tensor by tensor', async () => {
      const url = `${server.url}/range/vae.safetensors`;
      const reader = await openUrlReader(url);
      expect(reader.size).toBe(bytes.byteLength);
      server.requests.length = 0;
      const file = await SafetensorsFile.open(reader);
      expect(await readAll(file)).toEqual(expected);
      // 2 for the header, one per tensor; no request without a Range.
      expect(server.requests.length).toBe(2 + expected.size);
      expect(server.requests.every((r) => r.range !== undefined)).toBe(true);
      expect(server.requests[0]!.range).toBe('bytes=0-7');
      expect(server.requests[1]!.range).toMatch(/^bytes=8-\d+$/);
      expect(await reader.read(5, 0)).toEqual(new Uint8Array(0));
      await expect(reader.read(bytes.byteLength - 1, 2)).rejects.toThrow(`${url}: read of 2 bytes at ${bytes.byteLength - 1} is outside`);
    });

    it('accepts a small file served whole without Range support, refuses a large one', async () => {
      const tiny = await openUrlReader(`${server.url}/whole/tiny.txt`);
      expect(new TextDecoder().decode(await tiny.read(1, 3))).toBe('ell');
      await expect(openUrlReader(`${server.url}/whole/big.bin`)).rejects.toThrow(
        `${server.url}/whole/big.bin: the server ignored the Range request (HTTP 200 with the whole file, over 1048576 bytes); weights need a server with HTTP Range support`,
      );
      expect(await fetchText(`${server.url}/whole/tiny.txt`)).toBe('hello');
    });

    it('gives clear errors naming the URL: 404, other statuses, 416, bad responses, network failure', async () => {
      const u = server.url;
      const backoff = NETWORK.backoffMs;
      NETWORK.backoffMs = 1; // transient failures are tried NETWORK.attempts times: no waiting here
      onTestFinished(() => void (NETWORK.backoffMs = backoff));
      expect(await openUrlReaderIfExists(`${u}/range/missing.bin`)).toBeNull();
      expect(await fetchText(`${u}/range/missing.bin`)).toBeNull();
      await expect(openUrlReader(`${u}/range/missing.bin`)).rejects.toThrow(`${u}/range/missing.bin: not found (HTTP 404)`);
      await expect(openUrlReader(`${u}/status/500`)).rejects.toThrow(`${u}/status/500: opening failed after 5 attempts (HTTP 500 Internal Server Error)`);
      await expect(openUrlReader(`${u}/status/403`)).rejects.toThrow(`${u}/status/403: HTTP 403 Forbidden`);
      await expect(fetchText(`${u}/status/503`)).rejects.toThrow(`${u}/status/503: downloading failed after 5 attempts (HTTP 503 Service Unavailable)`);

      // One byte less in the body than the Content-Range promises.
      const short = await openUrlReader(`${u}/short/big.bin`);
      expect(short.size).toBe(big.byteLength);
      await expect(short.read(10, 100)).rejects.toThrow(`${u}/short/big.bin: reading bytes 10-109 failed after 5 attempts (received 99 of 100 bytes)`);
      expect(await (await openUrlReader(`${u}/range/big.bin`)).read(1000, 24)).toEqual(big.slice(1000, 1024));
      await expect(openUrlReader(`${u}/hidden/big.bin`)).rejects.toThrow(
        `${u}/hidden/big.bin: HTTP 206 without a usable Content-Range (null, wanted "bytes 0-0/<size>"; a cross-origin server must list Content-Range in Access-Control-Expose-Headers)`,
      );
      const shifted = await openUrlReader(`${u}/shifted/big.bin`);
      await expect(shifted.read(5, 3)).rejects.toThrow(`${u}/shifted/big.bin: asked for bytes 5-7/${big.byteLength}, the server sent Content-Range "bytes 6-8/${big.byteLength}"`);
      const forgetful = await openUrlReader(`${u}/forgetful/big.bin`);
      await expect(forgetful.read(5, 3)).rejects.toThrow(`${u}/forgetful/big.bin: the server ignored the Range request bytes=5-7 (HTTP 200)`);
      const changing = await openUrlReader(`${u}/changing/big.bin`);
      await expect(changing.read(0, 8)).rejects.toThrow(`${u}/changing/big.bin: the file changed on the server (size ${big.byteLength} when opened, now ${big.byteLength + 7})`);

      // A file that shrank after opening: the server answers 416.
      let served = big;
      const shrinking = await startServer(async () => served);
      const reader = await openUrlReader(`${shrinking.url}/range/f`);
      served = big.subarray(0, 100);
      await expect(reader.read(2000, 10)).rejects.toThrow(`${shrinking.url}/range/f: range bytes=2000-2009 not satisfiable (HTTP 416)`);
      // The server goes away: the kept-alive connection drops, or nothing listens any more.
      await shrinking.close();
      await expect(reader.read(0, 10)).rejects.toThrow(new RegExp(`^${shrinking.url}/range/f: reading bytes 0-9 failed after 5 attempts \\(network error \\(fetch failed`));
      const unused = await startServer(async () => null);
      await unused.close();
      await expect(openUrlReader(`${unused.url}/range/f`)).rejects.toThrow(new RegExp(`^${unused.url}/range/f: opening failed after 5 attempts \\(network error \\(fetch failed: .*ECONNREFUSED`));
    });
  });
});

describe('sharded checkpoints', () => {
  /** The tiny VAE split into shards by a name → shard rule, as `save_pretrained(max_shard_size)` writes them. */
  async function shards(assign: (name: string, i: number) => string[]): Promise<Map<string, Uint8Array>> {
    const file = await SafetensorsFile.open(await openFileReader(VAE));
    const byShard = new Map<string, TensorToWrite[]>();
    let i = 0;
    for (const [name, raw] of file.raw) {
      const data = (await file.readBytes(name)).bytes;
      for (const shard of assign(name, i++)) byShard.set(shard, [...(byShard.get(shard) ?? []), { name, dtype: raw.dtype, shape: raw.shape, data }]);
    }
    await file.close();
    return new Map([...byShard].map(([shard, tensors]) => [shard, encodeSafetensors(tensors, { format: 'pt' })]));
  }
  const indexFor = (map: Record<string, string>): string => JSON.stringify({ metadata: { total_size: 0 }, weight_map: map });
  const opener = (files: Map<string, Uint8Array>) => async (name: string) => memoryReader(files.get(name)!, name);

  it('merges the shards an index names into one source equal to the unsharded file', async () => {
    const random = rng(3);
    const names = ['diffusion_pytorch_model-00001-of-00003.safetensors', 'diffusion_pytorch_model-00002-of-00003.safetensors', 'diffusion_pytorch_model-00003-of-00003.safetensors'];
    const weightMap: Record<string, string> = {};
    const files = await shards((name) => {
      weightMap[name] = names[Math.floor(random() * 3)]!;
      return [weightMap[name]!];
    });
    const merged = await openShardedSafetensors(indexFor(weightMap), 'vae/index.json', opener(files));
    const whole = await SafetensorsFile.open(await openFileReader(VAE));
    expect([...merged.entries.values()].sort((a, b) => a.name.localeCompare(b.name))).toEqual([...whole.entries.values()].sort((a, b) => a.name.localeCompare(b.name)));
    expect(await readAll(merged)).toEqual(await readAll(whole));
    await expect(merged.read('nope')).rejects.toThrow('vae/index.json: no tensor named nope');
    await merged.close();
    await whole.close();
  });

  it('reports a tensor in two shards, an index that disagrees with a shard, and malformed indexes', async () => {
    const weightMap: Record<string, string> = {};
    const files = await shards((name, i) => {
      weightMap[name] = i % 2 ? 'b.safetensors' : 'a.safetensors';
      return i === 5 ? ['a.safetensors', 'b.safetensors'] : [weightMap[name]!];
    });
    const dup = Object.keys(weightMap)[5]!;
    await expect(openShardedSafetensors(indexFor(weightMap), 'idx.json', opener(files))).rejects.toThrow(`idx.json: tensor ${dup} is in both a.safetensors and b.safetensors`);

    const moved = { ...weightMap, [Object.keys(weightMap)[0]!]: 'b.safetensors' };
    await expect(openShardedSafetensors(indexFor(moved), 'idx.json', opener(files))).rejects.toThrow(
      `idx.json: invalid shard index: 1 tensor(s) the index puts in b.safetensors are not there: ${Object.keys(weightMap)[0]}`,
    );
    await expect(openShardedSafetensors('{"weight_map": [', 'idx.json', opener(files))).rejects.toThrow('idx.json: invalid shard index: not valid JSON');
    await expect(openShardedSafetensors('{"metadata": {}}', 'idx.json', opener(files))).rejects.toThrow('idx.json: invalid shard index: no "weight_map" object');
    await expect(openShardedSafetensors('{"weight_map": {}}', 'idx.json', opener(files))).rejects.toThrow('"weight_map" is empty');
    await expect(openShardedSafetensors('{"weight_map": {"w": "../a.safetensors"}}', 'idx.json', opener(files))).rejects.toThrow(
      'idx.json: invalid shard index: tensor w: shard "../a.safetensors" is not a file name beside the index',
    );
    await expect(openShardedSafetensors('{"weight_map": {"w": 3}}', 'idx.json', opener(files))).rejects.toThrow('tensor w: shard 3 is not a file name');

    const part = (name: string) => ({ description: name, entries: new Map([['x', { name: 'x', format: 'f32' as const, shape: [1] }]]), read: () => Promise.reject(new Error('unused')) });
    expect(() => new MergedSource('both', [part('p1'), part('p2')])).toThrow('both: tensor x is in both p1 and p2');
  });
});
