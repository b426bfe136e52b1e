// Node-only: a ByteReader over a file handle (positioned reads, no whole-file buffering), and
// the model-folder file system over a directory.

import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkReadRange, type ByteReader } from './byte-reader.js';
import type { ModelFs } from './model-folder.js';

export async function openFileReader(path: string): Promise<ByteReader> {
  const handle = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: cannot open (${e.code ?? e.message})`, { cause: e });
  });
  const { size } = await handle.stat();
  const reader: ByteReader = {
    description: path,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(reader, offset, length);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at byte ${offset + done} (wanted ${length} bytes at ${offset})`);
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
  return reader;
}

const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT' || ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

/** A model folder on disk (diffusers layout); absent files are null. */
export function nodeModelFs(dir: string): ModelFs {
  return {
    description: dir,
    open: (path) =>
      openFileReader(join(dir, path)).catch((e: unknown) => {
        if (isMissing(e)) return null;
        throw e;
      }),
    readText: (path) =>
      readFile(join(dir, path), 'utf8').catch((e: NodeJS.ErrnoException) => {
        if (isMissing(e)) return null;
        throw new Error(`${join(dir, path)}: cannot read (${e.code ?? e.message})`, { cause: e });
      }),
  };
}
