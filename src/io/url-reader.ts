// A ByteReader over an HTTP(S) URL using Range requests, so weights stream from a server (or a
// CDN) tensor by tensor. Every response is checked: a read must come back as 206 with the
// Content-Range asked for and exactly that many bytes. A server that ignores Range is
// accepted only for a small file, which is then held whole.
//
// Network faults are retried with exponential backoff (NETWORK): a failed connection, a 5xx,
// 408 or 429 answer, a body cut short or stalled (no byte for NETWORK.idleTimeoutMs). Range
// reads resume after the bytes already received. What cannot work by retrying is not retried.
// Errors follow the exit-code contract (errors.ts): a 4xx about what was asked (404, 403, 416)
// is a UsageError; the server or the connection failing — retries spent, answers that break
// HTTP's promises (wrong lengths or ranges, a file changed under us) — is a NetworkError.

import { NetworkError, UsageError } from '../errors.js';
import { checkReadRange, memoryReader, type ByteReader } from './byte-reader.js';
import { MAX_TEXT_FILE_BYTES } from './model-folder.js';

/** Largest file taken whole from a server that answers a Range request with 200. */
const WHOLE_FILE_LIMIT = 1 << 20;

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

/** How hard to try. Tests shorten the waits; the defaults ride out a CDN's hiccup (~8 s). */
export const NETWORK = {
  /** Tries of one request in all, the first included. */
  attempts: 5,
  /** The wait before the second try; doubled before each next one. */
  backoffMs: 500,
  /** A response that sends no byte for this long is abandoned (and tried again). */
  idleTimeoutMs: 30_000,
};

/** A failure that another try may not have: the connection, the server's moment. */
class Transient extends NetworkError {}

/** 408 Request Timeout, 429 Too Many Requests and 5xx: the server's state, not our request. */
export const isTransientStatus = (status: number): boolean => status >= 500 || status === 408 || status === 429;

/**
 * Runs `work` until it succeeds, at most NETWORK.attempts times while it fails with a Transient
 * error; each try gets a signal that aborts once the response stalls (`alive()` marks progress).
 * The last failure is a NetworkError naming the URL, what was being done and how often.
 */
async function retrying<T>(url: string, what: string, work: (signal: AbortSignal, alive: () => void) => Promise<T>): Promise<T> {
  let last: Error | undefined;
  for (let attempt = 0; attempt < NETWORK.attempts; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, NETWORK.backoffMs * 2 ** (attempt - 1)));
    const idle = new AbortController();
    const stall = (): ReturnType<typeof setTimeout> =>
      setTimeout(() => idle.abort(new Transient(`stalled: no data for ${NETWORK.idleTimeoutMs / 1000} s`)), NETWORK.idleTimeoutMs);
    let timer = stall();
    try {
      return await work(idle.signal, () => {
        clearTimeout(timer);
        timer = stall();
      });
    } catch (e) {
      if (!(e instanceof Transient)) throw e;
      last = e;
    } finally {
      clearTimeout(timer);
    }
  }
  const tries = NETWORK.attempts === 1 ? '' : ` after ${NETWORK.attempts} attempts`;
  throw new NetworkError(`${url}: ${what} failed${tries} (${last!.message})`, { cause: last });
}

async function get(url: string, signal: AbortSignal, range?: string): Promise<Response> {
  try {
    return await fetch(url, { signal, ...(range === undefined ? {} : { headers: { Range: `bytes=${range}` } }) });
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    const cause = (e as Error).cause as Error | undefined;
    const message = `network error (${(e as Error).message}${cause ? `: ${cause.message}` : ''})`;
    // Redirects that never end are the server's configuration; another try meets the same loop.
    if (/redirect/i.test(cause?.message ?? '')) throw new NetworkError(`${url}: ${message}`, { cause: e });
    throw new Transient(message, { cause: e });
  }
}

/** The response's status as an error: transient (tried again), the server's fault, or ours. */
function statusError(url: string, res: Response, range?: string): Error {
  const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
  if (isTransientStatus(res.status)) return new Transient(status);
  if (res.status === 404) return new UsageError(`${url}: not found (HTTP 404)`);
  if (res.status === 416) return new UsageError(`${url}: range bytes=${range} not satisfiable (HTTP 416)`);
  if (res.status >= 400) return new UsageError(`${url}: ${status}${range === undefined ? '' : ` for range bytes=${range}`}`);
  return new NetworkError(`${url}: unexpected ${status}${range === undefined ? '' : ` for range bytes=${range}`}`);
}

/** Reads the body into `out` from `at`, calling `alive` per chunk; returns the bytes received.
 *  A body that breaks off is Transient (the caller resumes); more than fits is the server's error. */
async function receive(url: string, res: Response, out: Uint8Array, at: number, alive: () => void, signal: AbortSignal): Promise<number> {
  if (!res.body) return 0;
  const body = res.body.getReader();
  let got = 0;
  try {
    for (;;) {
      const { done, value } = await body.read().catch((e: Error) => {
        if (signal.aborted) throw signal.reason;
        throw new Transient(`connection lost (${e.message})`, { cause: e });
      });
      if (done) return got;
      alive();
      if (at + got + value.byteLength > out.byteLength) throw new NetworkError(`${url}: the server sent more than the ${out.byteLength - at} bytes asked for`);
      out.set(value, at + got);
      got += value.byteLength;
    }
  } finally {
    await body.cancel().catch(() => undefined);
  }
}

/** The body, or null once it exceeds `limit` bytes (a whole file we did not ask for). */
async function boundedBody(url: string, res: Response, limit: number, alive: () => void, signal: AbortSignal): Promise<Uint8Array | null> {
  const declared = Number(res.headers.get('Content-Length') ?? NaN);
  if (declared > limit) {
    await res.body?.cancel();
    return null;
  }
  const out = new Uint8Array(Number.isSafeInteger(declared) ? declared : limit + 1);
  let got: number;
  try {
    got = await receive(url, res, out, 0, alive, signal);
  } catch (e) {
    if (e instanceof Transient || !(e instanceof NetworkError)) throw e;
    return null; // more than the limit (or than declared: then a transfer error, retried below)
  }
  if (Number.isSafeInteger(declared) && got < declared) throw new Transient(`connection closed after ${got} of ${declared} bytes`);
  return got > limit ? null : out.subarray(0, got);
}

/** Opens `url`, or null when the server says 404 (an optional file of a model folder). */
export async function openUrlReaderIfExists(url: string): Promise<ByteReader | null> {
  const opened = await retrying(url, 'opening', async (signal, alive): Promise<{ whole: Uint8Array } | { size: number } | null> => {
    const res = await get(url, signal, '0-0');
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (res.status === 200) {
      const whole = await boundedBody(url, res, WHOLE_FILE_LIMIT, alive, signal);
      if (!whole) throw new UsageError(`${url}: the server ignored the Range request (HTTP 200 with the whole file, over ${WHOLE_FILE_LIMIT} bytes); weights need a server with HTTP Range support`);
      return { whole };
    }
    await res.body?.cancel();
    if (res.status !== 206) throw statusError(url, res, '0-0');
    const m = CONTENT_RANGE.exec(res.headers.get('Content-Range') ?? '');
    if (!m || m[1] !== '0' || m[2] !== '0' || m[3] === '*') {
      throw new NetworkError(
        `${url}: HTTP 206 without a usable Content-Range (${JSON.stringify(res.headers.get('Content-Range'))}, wanted "bytes 0-0/<size>"; a cross-origin server must list Content-Range in Access-Control-Expose-Headers)`,
      );
    }
    return { size: Number(m[3]) };
  });
  if (!opened) return null;
  return 'whole' in opened ? memoryReader(opened.whole, url) : rangeReader(url, opened.size);
}

export async function openUrlReader(url: string): Promise<ByteReader> {
  const reader = await openUrlReaderIfExists(url);
  if (!reader) throw new UsageError(`${url}: not found (HTTP 404)`);
  return reader;
}

function rangeReader(url: string, size: number): ByteReader {
  const reader: ByteReader = {
    description: url,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(reader, offset, length);
      const out = new Uint8Array(length);
      let got = 0;
      if (length === 0) return out;
      await retrying(url, `reading bytes ${offset}-${offset + length - 1}`, async (signal, alive) => {
        // Resumed after the bytes a broken try delivered.
        const range = `${offset + got}-${offset + length - 1}`;
        const res = await get(url, signal, range);
        if (res.status !== 206) {
          await res.body?.cancel();
          if (res.status === 200) throw new NetworkError(`${url}: the server ignored the Range request bytes=${range} (HTTP 200)`);
          throw statusError(url, res, range);
        }
        const sent = res.headers.get('Content-Range');
        if (sent !== `bytes ${range}/${size}`) {
          await res.body?.cancel();
          const m = CONTENT_RANGE.exec(sent ?? '');
          if (m && m[3] !== String(size)) throw new NetworkError(`${url}: the file changed on the server (size ${size} when opened, now ${m[3]})`);
          throw new NetworkError(`${url}: asked for bytes ${range}/${size}, the server sent Content-Range ${JSON.stringify(sent)}`);
        }
        got += await receive(url, res, out, got, alive, signal);
        if (got < length) throw new Transient(`received ${got} of ${length} bytes`);
      });
      return out;
    },
  };
  return reader;
}

/** A small text file (config.json, vocab.json), or null when the server says 404; one over
 *  MAX_TEXT_FILE_BYTES is refused. */
export async function fetchText(url: string): Promise<string | null> {
  return retrying(url, 'downloading', async (signal, alive) => {
    const res = await get(url, signal);
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw statusError(url, res);
    }
    const body = await boundedBody(url, res, MAX_TEXT_FILE_BYTES, alive, signal);
    if (!body) throw new UsageError(`${url}: over the ${MAX_TEXT_FILE_BYTES}-byte limit for a config or tokenizer file`);
    return new TextDecoder().decode(body);
  });
}
