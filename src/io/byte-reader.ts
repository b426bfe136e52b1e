// Random access to the bytes of a file-like thing, so large weight files are read tensor
// by tensor: a Node file handle (io/node-file.ts), a browser Blob/File, an HTTP Range URL.

export interface ByteReader {
  /** Where the bytes come from, for error messages. */
  readonly description: string;
  readonly size: number;
  /** Exactly `length` bytes at `offset` (rejects if the source is shorter). */
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}
