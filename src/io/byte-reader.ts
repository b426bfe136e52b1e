// Random access to the bytes of a file-like thing, so large weight files are read tensor
// by tensor: a Node file handle (io/node-file.ts), a browser Blob/File (io/blob-reader.ts),
// an HTTP Range URL (io/url-reader.ts), or bytes already in memory.

export interface ByteReader {
  /** Where the bytes come from, for error messages. */
  readonly description: string;
  readonly size: number;
  /** Exactly `length` bytes at `offset` (rejects if the source is shorter). */
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** Rejects a request outside [0, size) before any I/O, naming the source. */
export function checkReadRange(reader: ByteReader, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > reader.size) {
    throw new Error(`${reader.description}: read of ${length} bytes at ${offset} is outside the ${reader.size}-byte source`);
  }
}

/** A ByteReader over bytes in memory (small whole-file downloads, tests). */
export function memoryReader(bytes: Uint8Array, description: string): ByteReader {
  const reader: ByteReader = {
    description,
    size: bytes.byteLength,
    read: async (offset, length) => {
      checkReadRange(reader, offset, length);
      return bytes.slice(offset, offset + length);
    },
  };
  return reader;
}
