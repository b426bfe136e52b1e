// A ByteReader over a Blob or File (browser file picker, drag and drop; Node's global Blob):
// each read slices the range, so a multi-GB File is never read whole.

import { checkReadRange, type ByteReader } from './byte-reader.js';

export function blobReader(blob: Blob, description = (blob as Partial<File>).name ?? 'blob'): ByteReader {
  const reader: ByteReader = {
    description,
    size: blob.size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(reader, offset, length);
      let buffer: ArrayBuffer;
      try {
        buffer = await blob.slice(offset, offset + length).arrayBuffer();
      } catch (e) {
        // A File changed or removed on disk after it was picked rejects with NotReadableError.
        throw new Error(`${description}: cannot read ${length} bytes at ${offset} (${(e as Error).message})`, { cause: e });
      }
      if (buffer.byteLength !== length) throw new Error(`${description}: wanted ${length} bytes at ${offset}, got ${buffer.byteLength}`);
      return new Uint8Array(buffer);
    },
  };
  return reader;
}
