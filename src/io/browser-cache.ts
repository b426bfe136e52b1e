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
  /** Downloads into the cache every file opened so far that it lacks (after a storage check). */
  download(options?: DownloadOptions): Promise<void>;
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
      const missing = opened.filter((f) => !f.cached);
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
  const storage = typeof navigator === 'undefined' ? undefined : navigator.storage;
  await storage?.persist?.().catch(() => false);
  const estimate = await storage?.estimate?.();
  if (estimate?.quota === undefined) return;
  const available = Math.max(0, estimate.quota - (estimate.usage ?? 0));
  if (bytes > available) {
    usage(
      `${where}: the model needs ${gigabytes(bytes)} of browser storage, ${gigabytes(available)} available ` +
        '(free disk space or clear other sites\u2019 data, or choose the model folder from disk instead)',
    );
  }
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
