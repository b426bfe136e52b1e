// Node-only: a ByteReader over a file handle (positioned reads, no whole-file buffering).

import { open } from 'node:fs/promises';
import type { ByteReader } from './byte-reader.js';

export async function openFileReader(path: string): Promise<ByteReader> {
  const handle = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${path}: cannot open (${e.code ?? e.message})`);
  });
  const { size } = await handle.stat();
  return {
    description: path,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
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
}
