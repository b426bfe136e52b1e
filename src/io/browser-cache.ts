// Browser-only: a model folder served over HTTP whose files are kept in Cache Storage, so a
// page reload reads the weights from disk instead of downloading gigabytes again.
//
// Opening a file that is not cached yet answers from the network with Range requests (the
// folder reads only safetensors headers while it is opened); download() then fetches every file
// opened so far, whole, once, streaming it into the cache, and switches its reader to the
// cached Blob. Reads of a cached file are blob.slice() ranges: Chromium backs cached bodies
// by disk, so a multi-GB file is never held in memory. Text files (configs, vocab) are cached
// as they are read. A later page load finds every file in the cache and makes no request.

import { NetworkError, usage } from '../errors.js';
import type { ProgressEvent } from '../pipeline/options.js';
import { blobReader } from './blob-reader.js';
import type { ByteReader } from './byte-reader.js';
import type { ModelFs } from './model-folder.js';
import { fetchText, openUrlReaderIfExists } from './url-reader.js';

/** The Cache Storage cache holding model files, keyed by URL. */
export const MODEL_CACHE = 'sdxl-turbo-webgpu-models-v1';

export interface DownloadOptions {
  /** Bytes of every file not yet cached, downloaded of their total; `file` is the one in flight. */
  readonly onProgress?: (e: ProgressEvent) => void;
  readonly signal?: AbortSignal;
}

export interface CachedModelFs extends ModelFs {
  /** Downloads into the cache every file opened so far that it lacks (after a storage check);
   *  with `only`, those of its paths (e.g. not the weights an 8-bit cache holds). */
  download(options?: DownloadOptions & { readonly only?: (path: string) => boolean }): Promise<void>;
}

interface OpenedFile {
  readonly path: string;
  readonly url: string;
  readonly size: number;
  /** The network until the file is cached, then the cached Blob. */
  reader: ByteReader;
  cached: boolean;
}

/** Whether this page can cache model files (Cache Storage exists only in secure contexts). */
export function canCacheModels(): boolean {
  return typeof caches !== 'undefined';
}

export async function cachedUrlModelFs(baseUrl: string, cacheName = MODEL_CACHE): Promise<CachedModelFs> {
  const cache = await caches.open(cacheName);
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const url = (path: string): string => new URL(path, base).href;
  const opened: OpenedFile[] = [];
  return {
    description: baseUrl,
    async open(path) {
      const hit = await cache.match(url(path));
      if (hit) return blobReader(await hit.blob(), url(path));
      const remote = await openUrlReaderIfExists(url(path));
      if (!remote) return null;
      const file: OpenedFile = { path, url: url(path), size: remote.size, reader: remote, cached: false };
      opened.push(file);
      return { description: file.url, size: file.size, read: (offset, length) => file.reader.read(offset, length) };
    },
    async readText(path) {
      const hit = await cache.match(url(path));
      if (hit) return hit.text();
      const text = await fetchText(url(path));
      if (text !== null) await cache.put(url(path), new Response(text));
      return text;
    },
    async download(options = {}) {
      const missing = opened.filter((f) => !f.cached && (options.only?.(f.path) ?? true));
      if (missing.length === 0) return;
      const tally = { done: 0, total: missing.reduce((sum, f) => sum + f.size, 0) };
      await checkStorage(tally.total, baseUrl);
      for (const file of missing) {
        await downloadInto(cache, file, tally, options);
        tally.done += file.size;
        file.reader = blobReader(await cachedBlob(cache, file), file.url);
        file.cached = true;
      }
    },
  };
}

/** Deletes every cached model file. */
export function clearModelCache(cacheName = MODEL_CACHE): Promise<boolean> {
  return caches.delete(cacheName);
}

/** Asks for persistent storage (so the browser does not evict gigabytes under pressure), then
 *  fails with the sizes when the origin's quota cannot take `bytes` more. */
async function checkStorage(bytes: number, where: string): Promise<void> {
  const short = await storageShortfall(bytes);
  if (short) usage(`${where}: the model needs ${short} (free disk space or clear other sites\u2019 data, or choose the model folder from disk instead)`);
}

/** Null when the origin's quota can take `bytes` more (or does not say), else the sizes. */
async function storageShortfall(bytes: number): Promise<string | null> {
  const storage = typeof navigator === 'undefined' ? undefined : navigator.storage;
  await storage?.persist?.().catch(() => false);
  const estimate = await storage?.estimate?.();
  if (estimate?.quota === undefined) return null;
  const available = Math.max(0, estimate.quota - (estimate.usage ?? 0));
  return bytes > available ? `${gigabytes(bytes)} of browser storage, ${gigabytes(available)} available` : null;
}

function gigabytes(bytes: number): string {
  return `${(bytes / 1e9).toFixed(bytes < 1e9 ? 3 : 1)} GB`;
}

/** One whole-file GET streamed into the cache, counting bytes as they pass. */
async function downloadInto(cache: Cache, file: OpenedFile, tally: { readonly done: number; readonly total: number }, { onProgress, signal }: DownloadOptions): Promise<void> {
  let res: Response;
  try {
    res = await fetch(file.url, signal ? { signal } : {});
  } catch (e) {
    signal?.throwIfAborted();
    throw new NetworkError(`${file.url}: network error (${(e as Error).message})`, { cause: e });
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new NetworkError(`${file.url}: HTTP ${res.status} ${res.statusText} downloading the file`);
  }
  let bytes = 0;
  const progress = (): void => onProgress?.({ stage: 'download', file: file.path, done: tally.done + bytes, total: tally.total });
  progress();
  const counted = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        bytes += chunk.byteLength;
        progress();
        out.enqueue(chunk);
      },
    }),
  );
  try {
    // A put whose body fails (abort, dropped connection) stores nothing.
    await cache.put(file.url, new Response(counted, { headers: { 'Content-Type': 'application/octet-stream' } }));
  } catch (e) {
    signal?.throwIfAborted();
    throw new NetworkError(`${file.url}: download interrupted after ${bytes} of ${file.size} bytes (${(e as Error).message})`, { cause: e });
  }
}

/** The cached body, checked against the size the server reported when the file was opened. */
async function cachedBlob(cache: Cache, file: OpenedFile): Promise<Blob> {
  const blob = await (await cache.match(file.url))?.blob();
  if (blob?.size !== file.size) {
    await cache.delete(file.url);
    throw new Error(`${file.url}: downloaded ${blob?.size ?? 0} bytes, the server announced ${file.size} (the file changed on the server?)`);
  }
  return blob;
}

// The 8-bit weight cache (docs/Q8.md, "In the browser"): the files `sdxl-turbo quantize` would
// write for the text encoders and the UNet (their config.json and one safetensors file each),
// made in the page the first time a URL model loads with weights 'q8' and kept in their own
// Cache Storage cache under <model URL>.sdxl-turbo-q8/. A marker written last lists them with
// their sizes and the key they were made for; a cache without it, with another key or with a
// file missing or of another size is not used (it is overwritten by the next 8-bit load).

/** The Cache Storage cache holding 8-bit weights made in this browser. */
export const Q8_CACHE = 'sdxl-turbo-webgpu-q8-v1';

/** What 8-bit weights were made from and by: the cache is used only for the same key. */
export interface Q8CacheKey {
  /** The model's base URL (a Hub repo's names its revision: …/resolve/main/). */
  readonly model: string;
  /** The `variant` option the weights were read with ('default': fp16 where the folder has it). */
  readonly variant: string;
  /** kernelSourceHash of the quantize kernel. */
  readonly kernel: string;
}

/** One file of the cache: a config (text) or a weight file (streamed chunks of `bytes` bytes). */
export type Q8CacheFile = { readonly path: string; readonly text: string } | { readonly path: string; readonly bytes: number; readonly chunks: () => AsyncIterable<Uint8Array> };

interface Q8Marker {
  readonly key: Q8CacheKey;
  /** Bytes of each file, by its path in the folder. */
  readonly files: Readonly<Record<string, number>>;
}

const q8Url = (key: Q8CacheKey, path: string): string => new URL(`.sdxl-turbo-q8/${path}`, key.model.endsWith('/') ? key.model : `${key.model}/`).href;
const MARKER = 'complete.json';

/** The complete 8-bit cache of `key` (its files as Blobs, by path) and its size; null if there is none. */
async function findQ8Cache(key: Q8CacheKey): Promise<{ blobs: Map<string, Blob>; bytes: number } | null> {
  const cache = await caches.open(Q8_CACHE);
  const marker = (await (await cache.match(q8Url(key, MARKER)))?.json().catch(() => null)) as Q8Marker | null | undefined;
  if (!marker || JSON.stringify(marker.key) !== JSON.stringify(key)) return null;
  const blobs = new Map<string, Blob>();
  for (const [path, bytes] of Object.entries(marker.files)) {
    const blob = await (await cache.match(q8Url(key, path)))?.blob();
    if (blob?.size !== bytes) return null;
    blobs.set(path, blob);
  }
  return { blobs, bytes: [...blobs.values()].reduce((sum, b) => sum + b.size, 0) };
}

/** Bytes of the complete 8-bit cache of `key`, or null when there is none. */
export async function cachedQ8Bytes(key: Q8CacheKey): Promise<number | null> {
  return (await findQ8Cache(key))?.bytes ?? null;
}

/**
 * `fs` with the 8-bit cache of `key` in place of the folders of the components it holds (their
 * config.json and weight file from the cache, nothing else of those folders); null when the
 * cache is incomplete or made for another key. The other files are `fs`'s.
 */
export async function openQ8Cache(key: Q8CacheKey, fs: ModelFs): Promise<ModelFs | null> {
  const found = await findQ8Cache(key);
  if (!found) return null;
  const folders = new Set([...found.blobs.keys()].map((path) => path.slice(0, path.indexOf('/') + 1)));
  const cached = (path: string): Blob | null | undefined => (folders.has(path.slice(0, path.indexOf('/') + 1)) ? (found.blobs.get(path) ?? null) : undefined);
  return {
    description: fs.description,
    async open(path) {
      const blob = cached(path);
      return blob === undefined ? fs.open(path) : blob && blobReader(blob, `${q8Url(key, path)} (8-bit, cached in this browser)`);
    },
    async readText(path) {
      const blob = cached(path);
      return blob === undefined ? fs.readText(path) : blob && blob.text();
    },
  };
}

/**
 * Writes the 8-bit cache of `key`: every file, then the marker. False, with one console warning
 * and nothing of it left, when the browser's storage cannot take it (quota); any other failure
 * also removes what was written, and rejects.
 */
export async function writeQ8Cache(key: Q8CacheKey, files: readonly Q8CacheFile[], { onProgress, signal }: DownloadOptions = {}): Promise<boolean> {
  const cache = await caches.open(Q8_CACHE);
  const sizes: Record<string, number> = {};
  const total = files.reduce((sum, f) => sum + ('bytes' in f ? f.bytes : 0), 0);
  let done = 0;
  // The old marker goes first: files being replaced are never taken for a complete cache.
  await cache.delete(q8Url(key, MARKER));
  const warn = (why: string): false => {
    console.warn(`${key.model}: the 8-bit weights are not kept in this browser (${why}); they are quantized at every load`);
    return false;
  };
  const short = await storageShortfall(total);
  if (short) return warn(`they need ${short}`);
  try {
    for (const file of files) {
      if ('text' in file) {
        await cache.put(q8Url(key, file.path), new Response(file.text));
        sizes[file.path] = new Blob([file.text]).size;
        continue;
      }
      const chunks = file.chunks()[Symbol.asyncIterator]();
      const body = new ReadableStream<Uint8Array>({
        async pull(out) {
          signal?.throwIfAborted();
          const next = await chunks.next();
          if (next.done) return out.close();
          done += next.value.byteLength;
          onProgress?.({ stage: 'download', file: file.path, done, total });
          out.enqueue(next.value);
        },
        cancel: () => void chunks.return?.(),
      });
      await cache.put(q8Url(key, file.path), new Response(body, { headers: { 'Content-Type': 'application/octet-stream' } }));
      sizes[file.path] = file.bytes;
    }
    await cache.put(q8Url(key, MARKER), Response.json({ key, files: sizes } satisfies Q8Marker));
    return true;
  } catch (e) {
    await Promise.all(files.map((f) => cache.delete(q8Url(key, f.path))));
    signal?.throwIfAborted();
    if ((e as Error).name !== 'QuotaExceededError') throw e;
    return warn((e as Error).message);
  }
}

/** Deletes every cached 8-bit weight file. */
export function clearQ8Cache(): Promise<boolean> {
  return caches.delete(Q8_CACHE);
}
