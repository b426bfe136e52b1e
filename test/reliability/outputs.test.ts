// Outputs are atomic and never clobber inputs (issue 13, item 4). The writer is checked with an
// injected failing write (a full disk: ENOSPC after part of the bytes), and the CLI's up-front
// checks with main() in this process: every case here fails before the model is opened.

import { execFileSync } from 'node:child_process';
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng } from '../../src/io/png-encode.js';
import { writePng } from '../../src/io/png.js';
import { writeFilesAtomic, type WriteBytes } from '../../src/node/atomic-write.js';
import { TINY, TINY_REF } from '../helpers/fixtures.js';
import { expectUsageError, runMain } from '../cli/run.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-outputs-test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A disk that fills up: the first `room` bytes land in the file, then ENOSPC. */
function fullDisk(room: number): WriteBytes {
  return async (path, data) => {
    await writeFile(path, data.subarray(0, room), { flag: 'wx' });
    throw Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: 'ENOSPC' });
  };
}

describe('atomic writes', () => {
  it('a full disk leaves nothing behind and the file already there as it was', async () => {
    const dir = await mkdtemp(join(tmp, 'full-'));
    const out = join(dir, 'out.png');
    await writeFile(out, 'the previous picture');
    const png = await encodePng({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).fill(7) });
    await expect(writeFilesAtomic([{ path: out, data: png }], { write: fullDisk(10) })).rejects.toThrow(`${out}: cannot write (ENOSPC)`);
    expect(await readdir(dir)).toEqual(['out.png']);
    expect(await readFile(out, 'utf8')).toBe('the previous picture');
  });

  it('a batch is all or nothing: a failure on its last file writes none of them', async () => {
    const dir = await mkdtemp(join(tmp, 'batch-'));
    let calls = 0;
    const write: WriteBytes = async (path, data) => {
      if (++calls === 3) return fullDisk(1)(path, data);
      await writeFile(path, data, { flag: 'wx' });
    };
    const files = [1, 2, 3].map((i) => ({ path: join(dir, `o-${i}.png`), data: new Uint8Array(100).fill(i) }));
    await expect(writeFilesAtomic(files, { write })).rejects.toThrow(`${join(dir, 'o-3.png')}: cannot write (ENOSPC)`);
    expect(await readdir(dir)).toEqual([]);
  });

  it('writes in full over an existing file, through a symbolic link to the linked file, with no temporary left', async () => {
    const dir = await mkdtemp(join(tmp, 'ok-'));
    const png = await encodePng({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).fill(9) });
    await writeFile(join(dir, 'a.png'), 'old');
    await writePng(join(dir, 'a.png'), png);
    expect(new Uint8Array(await readFile(join(dir, 'a.png')))).toEqual(png);
    await symlink(join(dir, 'target.png'), join(dir, 'link.png'));
    await writePng(join(dir, 'link.png'), png);
    expect((await lstat(join(dir, 'link.png'))).isSymbolicLink()).toBe(true);
    expect(new Uint8Array(await readFile(join(dir, 'target.png')))).toEqual(png);
    expect((await readdir(dir)).sort()).toEqual(['a.png', 'link.png', 'target.png']);
  });

  it('a write that fails (no such folder) leaves nothing', async () => {
    const dir = await mkdtemp(join(tmp, 'missing-'));
    await expect(writePng(join(dir, 'no/such/dir.png'), new Uint8Array(4))).rejects.toThrow('no/such/dir.png: cannot write (ENOENT)');
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('the CLI checks every output before the run: distinct, not an input, writable (exit 2)', () => {
  const base = ['generate', '--model', TINY, '--prompt', 'a cat'];
  let png: string;
  let before: Buffer;
  beforeAll(async () => {
    png = join(tmp, 'input.png');
    await writeFile(png, await encodePng({ width: 40, height: 32, data: new Uint8Array(40 * 32 * 3).fill(128) }));
    before = await readFile(png);
  });

  it('--out equal to --image (also by another spelling or a link) is refused and the input kept', async () => {
    expectUsageError(await runMain([...base, '--image', png, '--out', png]), `--out ${png} is the --image file ${png}`);
    expectUsageError(await runMain([...base, '--image', png, '--out', join(tmp, '.', 'x', '..', 'input.png')]), '--image file');
    const link = join(tmp, 'link-to-input.png');
    await symlink(png, link);
    expectUsageError(await runMain([...base, '--image', png, '--out', link]), `--out ${link} is the --image file`);
    expect(await readFile(png)).toEqual(before);
  });

  it('a batch name (OUT-2.png) equal to an input, or to --save-tensors, is refused', async () => {
    const second = join(tmp, 'o-2.png');
    await writeFile(second, before);
    expectUsageError(await runMain([...base, '--image', second, '--num-images', '2', '--out', join(tmp, 'o.png')]), `--out ${second} is the --image file`);
    expectUsageError(
      await runMain([...base, '--prompt', 'a dog', '--out', join(tmp, 'p.png'), '--save-tensors', join(tmp, 'p-2.png')]),
      `--save-tensors ${join(tmp, 'p-2.png')} is also --out ${join(tmp, 'p-2.png')}`,
    );
  });

  it('--out or --save-tensors equal to --inputs, a --lora file, a --model file or a --config file is refused', async () => {
    const file = join(tmp, 'weights.png');
    await writeFile(file, 'x');
    expectUsageError(await runMain([...base, '--lora', `${file}:0.5`, '--out', file]), `--out ${file} is the --lora file ${file}`);
    expectUsageError(await runMain(['generate', '--model', file, '--prompt', 'x', '--out', file]), `--out ${file} is the --model file`);
    expectUsageError(await runMain([...base, '--config', file, '--save-tensors', file]), `--save-tensors ${file} is the --config file`);
  });

  it('--save-tensors equal to --inputs is refused', async () => {
    // A copy of the fixture's recorded random tensors: if the check failed, the fixture stays.
    const inputs = join(tmp, 'inputs.safetensors');
    await copyFile(`${TINY_REF}/e2e_i2i_s0.5_2step_64x64.safetensors`, inputs);
    expectUsageError(await runMain([...base, '--inputs', inputs, '--save-tensors', inputs]), `--save-tensors ${inputs} is the --inputs file ${inputs}`);
  });

  it('an output that is a directory, not a regular file, or in a folder that is missing is refused', async () => {
    expectUsageError(await runMain([...base, '--out', join(tmp, 'nope', 'a.png')]), 'no such directory');
    await mkdir(join(tmp, 'dir-2.png'));
    expectUsageError(await runMain([...base, '--num-images', '2', '--out', join(tmp, 'dir.png')]), `--out ${join(tmp, 'dir-2.png')}: is a directory`);
    const fifo = join(tmp, 'fifo.png');
    execFileSync('mkfifo', [fifo]);
    expectUsageError(await runMain([...base, '--out', fifo]), `--out ${fifo}: is not a regular file`);
  });
});
