// A ByteReader over an HTTP(S) URL using Range requests, so weights stream from a server (or a
// CDN) tensor by tensor. Every response is checked: a read must come back as 206 with the
// Content-Range asked for and exactly that many bytes. A server that ignores Range is
// accepted only for a small file, which is then held whole.

import { NetworkError } from '../errors.js';
import { checkReadRange, memoryReader, type ByteReader } from './byte-reader.js';

/** Largest file taken whole from a server that answers a Range request with 200. */
const WHOLE_FILE_LIMIT = 1 << 20;

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

async function get(url: string, range?: string): Promise<Response> {
  try {
    return await fetch(url, range === undefined ? {} : { headers: { Range: `bytes=${range}` } });
  } catch (e) {
    const cause = (e as Error).cause as Error | undefined;
    throw new NetworkError(`${url}: network error (${(e as Error).message}${cause ? `: ${cause.message}` : ''})`, { cause: e });
  }
}

/** A server error (5xx) is the network's failure; 4xx answers are about what was asked. */
const statusError = (status: number, message: string): Error => (status >= 500 ? new NetworkError(message) : new Error(message));

const httpError = (url: string, res: Response, range: string): Error =>
  statusError(
    res.status,
    res.status === 416
      ? `${url}: range bytes=${range} not satisfiable (HTTP 416)`
      : res.status === 404
        ? `${url}: not found (HTTP 404)`
        : `${url}: HTTP ${res.status} ${res.statusText} for range bytes=${range}`,
  );

/** The body, or null once it exceeds `limit` bytes (a whole file we did not ask for). */
async function boundedBody(url: string, res: Response, limit: number): Promise<Uint8Array | null> {
  const declared = Number(res.headers.get('Content-Length') ?? NaN);
  if (declared > limit || !res.body) {
    await res.body?.cancel();
    return declared > limit ? null : new Uint8Array(0);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const body = res.body.getReader();
  for (;;) {
    const { done, value } = await body.read().catch((e: Error) => {
      throw new NetworkError(`${url}: download interrupted (${e.message})`, { cause: e });
    });
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await body.cancel();
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Opens `url`, or null when the server says 404 (an optional file of a model folder). */
export async function openUrlReaderIfExists(url: string): Promise<ByteReader | null> {
  const res = await get(url, '0-0');
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (res.status === 200) {
    const whole = await boundedBody(url, res, WHOLE_FILE_LIMIT);
    if (!whole) throw new Error(`${url}: the server ignored the Range request (HTTP 200 with the whole file, over ${WHOLE_FILE_LIMIT} bytes); weights need a server with HTTP Range support`);
    return memoryReader(whole, url);
  }
  if (res.status !== 206) {
    await res.body?.cancel();
    throw httpError(url, res, '0-0');
  }
  const m = CONTENT_RANGE.exec(res.headers.get('Content-Range') ?? '');
  await res.body?.cancel();
  if (!m || m[1] !== '0' || m[2] !== '0' || m[3] === '*') {
    throw new Error(
      `${url}: HTTP 206 without a usable Content-Range (${JSON.stringify(res.headers.get('Content-Range'))}, wanted "bytes 0-0/<size>"; a cross-origin server must list Content-Range in Access-Control-Expose-Headers)`,
    );
  }
  return rangeReader(url, Number(m[3]));
}

export async function openUrlReader(url: string): Promise<ByteReader> {
  const reader = await openUrlReaderIfExists(url);
  if (!reader) throw new Error(`${url}: not found (HTTP 404)`);
  return reader;
}

function rangeReader(url: string, size: number): ByteReader {
  const reader: ByteReader = {
    description: url,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(reader, offset, length);
      if (length === 0) return new Uint8Array(0);
      const range = `${offset}-${offset + length - 1}`;
      const res = await get(url, range);
      if (res.status !== 206) {
        await res.body?.cancel();
        if (res.status === 200) throw new Error(`${url}: the server ignored the Range request bytes=${range} (HTTP 200)`);
        throw httpError(url, res, range);
      }
      const got = res.headers.get('Content-Range');
      if (got !== `bytes ${range}/${size}`) {
        await res.body?.cancel();
        const m = CONTENT_RANGE.exec(got ?? '');
        if (m && m[3] !== String(size)) throw new Error(`${url}: the file changed on the server (size ${size} when opened, now ${m[3]})`);
        throw new Error(`${url}: asked for bytes ${range}/${size}, the server sent Content-Range ${JSON.stringify(got)}`);
      }
      const body = await res.arrayBuffer().catch((e: Error) => {
        throw new NetworkError(`${url}: download of bytes ${range} interrupted (${e.message})`, { cause: e });
      });
      if (body.byteLength !== length) throw new Error(`${url}: asked for ${length} bytes (${range}), received ${body.byteLength}`);
      return new Uint8Array(body);
    },
  };
  return reader;
}

/** A small text file (config.json, vocab.json), or null when the server says 404. */
export async function fetchText(url: string): Promise<string | null> {
  const res = await get(url);
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw statusError(res.status, `${url}: HTTP ${res.status} ${res.statusText}`);
  }
  return res.text();
}
