// Node-only: a ByteReader over a file handle (positioned reads, no whole-file buffering), and
// the model-folder file system over a directory. Only regular files are read: a FIFO, a device
// or a directory is refused by what the opened handle is (opened non-blocking, so a FIFO with no
// writer cannot hang the open). A model folder's files must resolve inside it (see nodeModelFs).

import { constants, type FileHandle, open, realpath } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { UsageError } from '../errors.js';
import { checkReadRange, type ByteReader } from './byte-reader.js';
import { MAX_TEXT_FILE_BYTES, type ModelFs } from './model-folder.js';

/** What a non-regular file is, for messages. */
function kind(stats: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  return 'not a plain file';
}

/** The handle of a regular file and its size; anything else is a UsageError naming `path`. */
async function openRegular(path: string, description = path): Promise<{ handle: FileHandle; size: number }> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${description}: cannot open (${e.code ?? e.message})`, { cause: e });
  });
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new UsageError(`${description}: not a regular file (${kind(stats)})`);
    return { handle, size: stats.size };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

export async function openFileReader(path: string, description = path): Promise<ByteReader> {
  const { handle, size } = await openRegular(path, description);
  const reader: ByteReader = {
    description,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(reader, offset, length);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${description}: unexpected end of file at byte ${offset + done} (wanted ${length} bytes at ${offset})`);
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
  return reader;
}

/** A regular file read whole; one over `maxBytes` is refused before reading, with the message
 *  `tooLarge(size)` gives after the description. */
export async function readRegularFile(path: string, description: string, maxBytes: number, tooLarge: (size: number) => string): Promise<Buffer> {
  const { handle, size } = await openRegular(path, description);
  try {
    if (size > maxBytes) throw new UsageError(`${description}: ${tooLarge(size)}`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** A config or tokenizer file, refused over MAX_TEXT_FILE_BYTES. */
async function readSmallText(path: string, description: string): Promise<string> {
  const bytes = await readRegularFile(path, description, MAX_TEXT_FILE_BYTES, (size) => `${size} bytes, over the ${MAX_TEXT_FILE_BYTES}-byte limit for a config or tokenizer file`);
  return bytes.toString('utf8');
}

const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT';

/** Whether `path` is `root` or inside it (both real paths). */
const within = (path: string, root: string): boolean => path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);

/**
 * The folders a model folder's files may resolve into: the folder itself and, when it is a
 * Hugging Face cache snapshot (models--org--name/snapshots/<commit>), that repository's blobs/,
 * where the snapshot's links point.
 */
async function allowedRoots(dir: string): Promise<string[]> {
  const root = await realpath(dir).catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`${dir}: cannot open the model folder (${e.code ?? e.message})`, { cause: e });
  });
  const repo = dirname(dirname(root));
  const isSnapshot = basename(dirname(root)) === 'snapshots' && basename(repo).startsWith('models--');
  return isSnapshot ? [root, join(repo, 'blobs')] : [root];
}

/** A model folder on disk (diffusers layout); absent files are null. Every file must resolve
 *  (after links) inside the folder — or a cache snapshot's blobs/ — and be a regular file. */
export function nodeModelFs(dir: string): ModelFs {
  let roots: Promise<string[]> | undefined;
  /** The real path of `path` in the folder, null if absent; a UsageError if it leads outside. */
  const resolve = async (path: string): Promise<string | null> => {
    const allowed = await (roots ??= allowedRoots(dir));
    const real = await realpath(join(dir, path)).catch((e: NodeJS.ErrnoException) => {
      if (isMissing(e)) return null;
      throw new Error(`${join(dir, path)}: cannot open (${e.code ?? e.message})`, { cause: e });
    });
    if (real !== null && !allowed.some((r) => within(real, r))) {
      throw new UsageError(`${join(dir, path)}: resolves to ${real}, outside the model folder ${allowed[0]}; a model's files must be inside its folder`);
    }
    return real;
  };
  return {
    description: dir,
    open: async (path) => {
      const real = await resolve(path);
      return real === null ? null : openFileReader(real, join(dir, path));
    },
    readText: async (path) => {
      const real = await resolve(path);
      return real === null ? null : readSmallText(real, join(dir, path));
    },
  };
}
