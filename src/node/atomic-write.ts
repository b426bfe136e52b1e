// Node-only: the CLI's outputs are written atomically. Each file goes to a temporary file in
// its target folder (same file system, so the rename is atomic), and only when every file of
// the run is written in full are they renamed into place. On any failure (a full disk, a
// permission lost mid-run) the temporary files are removed: no truncated PNG, no half of a
// batch, and an existing file at the target stays as it was.

import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readlink, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

export interface OutputFile {
  readonly path: string;
  readonly data: Uint8Array;
}

/** How the bytes reach a temporary file; tests inject a failing one (ENOSPC). */
export type WriteBytes = (path: string, data: Uint8Array) => Promise<void>;

/** Writes a new file (never one already there), synced. */
export const writeBytes: WriteBytes = async (path, data) => {
  // 'wx': never follow or reuse something already at the temporary name.
  const handle = await open(path, 'wx', 0o666);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
};

/** Where writing `path` lands: through symbolic links to the file they name (as writeFile
 *  would), so that the rename replaces that file, not the link. */
export async function linkTarget(path: string): Promise<string> {
  let target = resolve(path);
  for (let hops = 0; hops < 40; hops++) {
    const info = await lstat(target).catch(() => null);
    if (!info?.isSymbolicLink()) return target;
    target = resolve(dirname(target), await readlink(target));
  }
  return target; // a loop: the write fails with ELOOP or ENOENT, naming the path as given
}

/** The temporary name of `path`: hidden, in the same folder, unique to this call. */
export function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Writes every file, all or nothing: each to a temporary file beside it, then each renamed
 * over its path. A failure before the renames leaves nothing behind; `describe` names the file
 * in the error (e.g. "--save-tensors out.safetensors").
 */
export async function writeFilesAtomic(files: readonly OutputFile[], options: { write?: WriteBytes; describe?: (path: string) => string } = {}): Promise<void> {
  const write = options.write ?? writeBytes;
  const describe = options.describe ?? ((path: string) => path);
  const temporaries: Array<{ temporary: string; path: string; target: string }> = [];
  try {
    for (const { path, data } of files) {
      const target = await linkTarget(path);
      const temporary = temporaryPath(target);
      temporaries.push({ temporary, path, target });
      await write(temporary, data).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`${describe(path)}: cannot write (${e.code ?? e.message})`, { cause: e });
      });
    }
    for (const { temporary, path, target } of temporaries) {
      await rename(temporary, target).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`${describe(path)}: cannot write (${e.code ?? e.message})`, { cause: e });
      });
    }
  } catch (e) {
    // Renamed ones are gone from their temporary names already (rm with force ignores them).
    await Promise.all(temporaries.map(({ temporary }) => rm(temporary, { force: true }).catch(() => undefined)));
    throw e;
  }
}

/**
 * Writes a whole folder, all or nothing: `fill` writes into a temporary folder beside `dir`,
 * which is renamed to `dir` only when `fill` is done; on any failure it is removed. `dir` must
 * not exist yet (the caller checks it, naming its option); a folder that appears meanwhile
 * makes the rename fail rather than be merged into.
 */
export async function writeFolderAtomic(dir: string, fill: (temporary: string) => Promise<void>): Promise<void> {
  const target = resolve(dir);
  const temporary = temporaryPath(target);
  await mkdir(temporary);
  try {
    await fill(temporary);
    if (await lstat(target).catch(() => null)) throw new Error(`${dir}: appeared while it was written; nothing was replaced`);
    await rename(temporary, target);
  } catch (e) {
    await rm(temporary, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
}
