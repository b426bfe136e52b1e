// Nothing outside the model folder, regular files only, no leaked handles (issue 13, items 3, 5
// and 10): links out of a model folder are refused (those of a Hugging Face cache snapshot into
// its repository's blobs/ are not), FIFOs and devices are refused without hanging, oversized
// files before they are read, file contents in messages are short and escaped, and 100 failed
// loads leave no file descriptor open.

import { execFileSync } from 'node:child_process';
import { link, mkdir, mkdtemp, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { MAX_TEXT_FILE_BYTES, ModelFolder } from '../../src/io/model-folder.js';
import { nodeModelFs, openFileReader } from '../../src/io/node-file.js';
import { encodeSafetensors, SafetensorsFile, type TensorToWrite } from '../../src/io/safetensors.js';
import { expectUsageError, runMain } from '../cli/run.js';
import { TINY } from '../helpers/fixtures.js';
import { linkTiny, replaceFile } from './model-folder.js';

let tmp: string;
let count = 0;
/** A fresh linked copy of the tiny folder. */
const copy = (): Promise<string> => linkTiny(join(tmp, `m${count++}`));

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-files-test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const tokenize = (model: string): ReturnType<typeof runMain> => runMain(['tokenize', '--model', model, '--prompt', 'a cat']);
const generate = (model: string, ...more: string[]): ReturnType<typeof runMain> => runMain(['generate', '--model', model, '--prompt', 'x', '--out', join(tmp, 'o.png'), ...more]);

function mkfifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

describe('links out of the model folder', () => {
  it('merges.txt linked to /etc/passwd is refused, naming both, and none of its lines is printed', async () => {
    const dir = await copy();
    await rm(join(dir, 'tokenizer/merges.txt'));
    await symlink('/etc/passwd', join(dir, 'tokenizer/merges.txt'));
    const run = await tokenize(dir);
    expectUsageError(run, `${dir}/tokenizer/merges.txt: resolves to /etc/passwd, outside the model folder`);
    expect(run.err[0]).not.toContain('root:');
  });

  it('a weight file linked to a folder next door, and a relative ../ link, are refused; links inside the folder are fine', async () => {
    const dir = await copy();
    const outside = await copy();
    const weights = 'unet/diffusion_pytorch_model.fp16.safetensors';
    await rm(join(dir, weights));
    await symlink(join(outside, weights), join(dir, weights));
    expectUsageError(await generate(dir), `${dir}/${weights}: resolves to ${join(outside, weights)}, outside the model folder`);

    const other = await copy();
    await rm(join(other, 'tokenizer_2/vocab.json'));
    await symlink(relative(join(other, 'tokenizer_2'), join(outside, 'tokenizer_2/vocab.json')), join(other, 'tokenizer_2/vocab.json'));
    expectUsageError(await tokenize(other), 'tokenizer_2/vocab.json: resolves to', 'outside the model folder');

    // Inside: tokenizer_2's merges are tokenizer's (the same file in SDXL).
    const inside = await copy();
    await rm(join(inside, 'tokenizer_2/merges.txt'));
    await symlink('../tokenizer/merges.txt', join(inside, 'tokenizer_2/merges.txt'));
    const run = await tokenize(inside);
    expect(run.code, run.err.join('\n')).toBe(0);
  });

  it("a Hugging Face cache snapshot reads through its links into the repository's blobs/, not into another repository's", async () => {
    const cache = join(tmp, 'hub');
    const repo = join(cache, 'models--test--tiny');
    const commit = 'a'.repeat(40);
    const snapshot = join(repo, 'snapshots', commit);
    // Every file of the tiny folder as a blob, linked from the snapshot as huggingface_hub does.
    const files = (await readdir(TINY, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => relative(TINY, join(e.parentPath, e.name)));
    await mkdir(join(repo, 'blobs'), { recursive: true });
    for (const [i, file] of files.entries()) {
      await link(join(TINY, file), join(repo, 'blobs', `blob${i}`));
      await mkdir(dirname(join(snapshot, file)), { recursive: true });
      await symlink(relative(dirname(join(snapshot, file)), join(repo, 'blobs', `blob${i}`)), join(snapshot, file));
    }
    await mkdir(join(repo, 'refs'));
    await writeFile(join(repo, 'refs/main'), commit);
    const folder = await ModelFolder.open(nodeModelFs(snapshot));
    expect(folder.weightFile('unet')).toBe('unet/diffusion_pytorch_model.fp16.safetensors');
    await folder.close();

    const env = { HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE };
    process.env.HF_HUB_CACHE = cache;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      const run = await tokenize('test/tiny');
      expect(run.code, run.err.join('\n')).toBe(0);
      // A blob of another repository of the cache is outside.
      const other = join(cache, 'models--test--other', 'blobs');
      await mkdir(other, { recursive: true });
      await link(join(TINY, 'tokenizer/vocab.json'), join(other, 'vocab'));
      await rm(join(snapshot, 'tokenizer/vocab.json'));
      await symlink(relative(join(snapshot, 'tokenizer'), join(other, 'vocab')), join(snapshot, 'tokenizer/vocab.json'));
      expectUsageError(await tokenize('test/tiny'), 'tokenizer/vocab.json: resolves to', 'models--test--other/blobs/vocab, outside the model folder');
    } finally {
      for (const [k, v] of Object.entries(env)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});

describe('FIFOs, devices and folders as inputs: refused at once, never read', () => {
  it('a FIFO as merges.txt, as a weight file, as --image and as --model (nothing writes to them: a read would hang)', async () => {
    const dir = await copy();
    await rm(join(dir, 'tokenizer/merges.txt'));
    mkfifo(join(dir, 'tokenizer/merges.txt'));
    expectUsageError(await tokenize(dir), `${dir}/tokenizer/merges.txt: not a regular file (a FIFO)`);

    const weights = await copy();
    const file = 'vae/diffusion_pytorch_model.fp16.safetensors';
    await rm(join(weights, file));
    mkfifo(join(weights, file));
    expectUsageError(await generate(weights), `${weights}/${file}: not a regular file (a FIFO)`);

    const fifo = join(tmp, 'image.fifo');
    mkfifo(fifo);
    expectUsageError(await generate(TINY, '--image', fifo), `--image: ${fifo}: not a regular file (a FIFO)`);
    expectUsageError(await generate(fifo), `${fifo}: not a regular file (a FIFO)`);
  });

  it('/dev/zero and /dev/null as --model, --image, --inputs; a folder as --inputs', async () => {
    for (const device of ['/dev/zero', '/dev/null']) {
      expectUsageError(await generate(device), `${device}: not a regular file (a device)`);
      expectUsageError(await generate(TINY, '--image', device), `--image: ${device}: not a regular file (a device)`);
      expectUsageError(await generate(TINY, '--inputs', device), `--inputs: ${device}: not a regular file (a device)`);
    }
    expectUsageError(await generate(TINY, '--inputs', tmp), `--inputs: ${tmp}: not a regular file (a directory)`);
  });

  it('a config or tokenizer file over the size cap is refused from its size, before it is read', async () => {
    const dir = await copy();
    await replaceFile(dir, 'tokenizer/vocab.json', '');
    await truncate(join(dir, 'tokenizer/vocab.json'), MAX_TEXT_FILE_BYTES + 1); // sparse: no disk used
    expectUsageError(await tokenize(dir), `${dir}/tokenizer/vocab.json: ${MAX_TEXT_FILE_BYTES + 1} bytes, over the ${MAX_TEXT_FILE_BYTES}-byte limit`);
  });
});

describe('messages quote files only as short escaped excerpts, and name the file', () => {
  it('a vocab.json with terminal escape codes: the message names vocab.json and holds no control character', async () => {
    const dir = await copy();
    await replaceFile(dir, 'tokenizer/vocab.json', `{"a": 1, \x1b[2J\x1b]0;owned\x07 ${'x'.repeat(10000)}}`);
    const run = await tokenize(dir);
    expectUsageError(run, `${dir}/tokenizer/vocab.json: invalid JSON`);
    expect(run.err[0]).not.toMatch(/[\x00-\x1f\x7f-\x9f]/);
    expect(run.err[0]!.length).toBeLessThan(400);
  });

  it('merges.txt and a shard index: long bad lines cut short, escaped, the file named', async () => {
    const dir = await copy();
    const merges = (await readFile(join(TINY, 'tokenizer/merges.txt'), 'utf8')).split('\n');
    await replaceFile(dir, 'tokenizer/merges.txt', [merges[0], `a b \x1b[31m${'y'.repeat(5000)}`, ...merges.slice(1)].join('\n'));
    const run = await tokenize(dir);
    expectUsageError(run, `${dir}/tokenizer/merges.txt: line 2 is "a b \\u001b[31m`);
    expect(run.err[0]!.length).toBeLessThan(400);

    const sharded = await copy();
    await rm(join(sharded, 'unet/diffusion_pytorch_model.fp16.safetensors'));
    await replaceFile(sharded, 'unet/diffusion_pytorch_model.safetensors.index.fp16.json', `{"weight_map": {"a": "../\\u001b[31m${'z'.repeat(5000)}"}}`);
    const shardRun = await generate(sharded);
    expectUsageError(shardRun, `${sharded}/unet/diffusion_pytorch_model.safetensors.index.fp16.json: invalid shard index: tensor a: shard "../\\u001b[31m`);
    expect(shardRun.err[0]!.length).toBeLessThan(400);
  });
});

describe('the weight-name check is linear', () => {
  it('a weight file with 300k unexpected tensors is one line counting them, naming three', async () => {
    const dir = await copy();
    const file = 'vae/diffusion_pytorch_model.fp16.safetensors';
    const original = await SafetensorsFile.open(await openFileReader(join(TINY, file)));
    const tensors: TensorToWrite[] = [];
    for (const name of original.raw.keys()) {
      const { entry, bytes } = await original.readBytes(name);
      tensors.push({ name, dtype: entry.dtype, shape: entry.shape, data: bytes });
    }
    await original.close();
    const empty = new Uint8Array(0);
    for (let i = 0; i < 300_000; i++) tensors.push({ name: `junk.${i}.weight`, dtype: 'F16', shape: [0], data: empty });
    await replaceFile(dir, file, encodeSafetensors(tensors));
    // The time goes to JSON.parse of the 17 MB header; the check itself is one pass (it took
    // minutes when each mismatch copied the list of those before it).
    expectUsageError(await generate(dir), `vae weights in ${dir}/${file} do not match the model: 300000 unexpected (junk.0.weight, junk.1.weight, junk.2.weight, …)`);
  });
});

describe('no handle leaks', () => {
  const openFds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;

  it('100 failed opens and loads (a bad weight header, a bad config, a FIFO) leave no file descriptor open', async () => {
    const badHeader = await copy();
    await replaceFile(badHeader, 'vae/diffusion_pytorch_model.fp16.safetensors', new Uint8Array(64).fill(0xff));
    const badConfig = await copy();
    await replaceFile(badConfig, 'unet/config.json', JSON.stringify({ ...JSON.parse(await readFile(join(TINY, 'unet/config.json'), 'utf8')), layers_per_block: 1e9 }));
    const fifo = await copy();
    await rm(join(fifo, 'text_encoder_2/model.fp16.safetensors'));
    mkfifo(join(fifo, 'text_encoder_2/model.fp16.safetensors'));

    const warnings: Error[] = [];
    const onWarning = (w: Error): number => warnings.push(w);
    process.on('warning', onWarning);
    try {
      await ModelFolder.open(nodeModelFs(badHeader)).catch(() => null); // warm up lazily opened modules
      const before = await openFds();
      for (let i = 0; i < 100; i++) {
        await expect(ModelFolder.open(nodeModelFs(badHeader))).rejects.toThrow('vae/diffusion_pytorch_model.fp16.safetensors');
        await expect(ModelFolder.open(nodeModelFs(fifo))).rejects.toThrow(UsageError);
      }
      for (let i = 0; i < 10; i++) expect((await generate(badConfig)).code).toBe(2);
      // Handles closed by the garbage collector would show up as DEP0137 warnings.
      (globalThis as { gc?: () => void }).gc?.();
      expect(await openFds()).toBe(before);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => w.message)).toEqual([]);
  });
});
