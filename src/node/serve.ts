// The HTTP face of a pipeline (`sdxl-turbo serve`), on Node's http module: four JSON routes and
// an event stream need no framework, and the queue depends on seeing each client go away.
//   POST /v1/images/generations  OpenAI's images API shape (prompt, n, size "WxH",
//        response_format "b64_json") plus this engine's seed, steps, strength + image,
//        negative_prompt, guidance_scale; the response adds per-request timings.
//   GET  /v1/live?size=…&seed=…  a live session (pipeline.live()) as Server-Sent Events: a
//        `session` event with its id, then a `frame` per image; POST /v1/live/ID {prompt,
//        image?, strength?} asks for the next frame. The session ends when the stream closes.
//   GET  /health                 status, queue, model, adapter; 503 while loading or stopping.
// One GPU queue: one generation runs, at most `queue` wait behind it (429 beyond); a waiting
// request whose client disconnects is dropped, a running one is cancelled through generate()'s
// AbortSignal. A live session queues for the GPU like a request whenever it has a frame to
// draw and gives it back once the newest frame is out, so generations run between keystrokes.
// A bad request is a 4xx with {error: {message, type, param}}, param naming the
// field. Bound to loopback, requests must name a loopback Host (no DNS rebinding from a page).

import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UsageError } from '../errors.js';
import type { Pipeline } from '../index.js';
import type { LiveRequest, LiveSession } from '../pipeline/live.js';
import { checkStrength, DEFAULT_SIZE, type ImageToImageOptions, resolveGenerate } from '../pipeline/options.js';
import { decodeImage } from './image-file.js';

/** What the server uses of a pipeline. */
export type ServedPipeline = Pick<Pipeline, 'generate' | 'imageToImage' | 'live' | 'gpu' | 'dtype'>;

export interface ServeOptions {
  /** The model's name in /health (e.g. --model as given). */
  readonly model: string;
  /** Address to listen on (default 127.0.0.1). The server has no authentication. */
  readonly host?: string;
  /** Port (default 8188; 0: a free one, see RunningServer.url). */
  readonly port?: number;
  /** Requests that may wait behind the running one (default 8); more are answered 429. */
  readonly queue?: number;
  /** Largest request body in bytes (default 64 MiB); larger: 413. */
  readonly maxBodyBytes?: number;
  /** Live sessions open at once (default 4); more are answered 429. */
  readonly liveSessions?: number;
  /** Every request's way through the queue and every response (the CLI's --verbose log). */
  readonly onEvent?: (event: ServeEvent) => void;
}

export type ServeEvent =
  | { readonly type: 'queued'; readonly id: number; readonly prompt: string; readonly waiting: number }
  | { readonly type: 'started'; readonly id: number }
  /** The client went away (or the server stopped): dropped while waiting, or cancelled while running. */
  | { readonly type: 'cancelled'; readonly id: number; readonly running: boolean }
  | { readonly type: 'response'; readonly method: string; readonly path: string; readonly status: number; readonly ms: number; readonly error?: string };

export interface Health {
  readonly status: 'loading' | 'ok' | 'stopping' | 'failed';
  readonly model: string;
  readonly adapter: string | null;
  readonly dtype: string | null;
  readonly queue: { readonly running: number; readonly waiting: number; readonly limit: number };
  /** Live sessions open, and requests being handled (streams included). */
  readonly live: number;
  readonly requests: number;
  /** Generations answered 200, cancelled (client gone or server stopping), failed (4xx/5xx
   *  after validation), and requests refused for a full queue. */
  readonly served: { readonly completed: number; readonly cancelled: number; readonly failed: number; readonly rejected: number };
}

export interface RunningServer {
  /** http://host:port */
  readonly url: string;
  health(): Health;
  /**
   * Stops: no new requests (503), waiting ones answered 503, the running generation finishes
   * and is answered — or, with `cancel` (now or in a later call), is cancelled and answered
   * 503. Resolves once every connection is closed. The pipeline stays loaded.
   */
  close(options?: { readonly cancel?: boolean }): Promise<void>;
}

export const DEFAULT_PORT = 8188;
export const DEFAULT_QUEUE = 8;
/** A request with a base64 image of up to 48 MiB. */
export const DEFAULT_MAX_BODY = 64 * 2 ** 20;
export const DEFAULT_LIVE_SESSIONS = 4;
/** An event stream's comment line this often keeps proxies from closing an idle session. */
const KEEPALIVE_MS = 15_000;

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  403: 'permission_error',
  404: 'not_found_error',
  405: 'invalid_request_error',
  413: 'invalid_request_error',
  415: 'invalid_request_error',
  429: 'queue_full_error',
  500: 'server_error',
  503: 'unavailable_error',
};

/** An answer other than 200: status, message, and the request field at fault. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The request field of each library option, for UsageError(option). */
const FIELDS: Record<string, string> = {
  prompt: 'prompt',
  imagesPerPrompt: 'n',
  width: 'size',
  height: 'size',
  seed: 'seed',
  steps: 'steps',
  strength: 'strength',
  image: 'image',
  guidanceScale: 'guidance_scale',
  negativePrompt: 'negative_prompt',
};

/** The fields POST /v1/images/generations takes; `model` and `user` (sent by OpenAI clients) are ignored. */
const ACCEPTED = ['prompt', 'n', 'size', 'response_format', 'seed', 'steps', 'strength', 'image', 'negative_prompt', 'guidance_scale', 'model', 'user'];

/** A library UsageError as a 400 naming the request field ("n must be…", "size: width must be…"). */
export function requestError(e: UsageError): HttpError {
  const field = e.option === undefined ? undefined : FIELDS[e.option];
  if (field === undefined) return new HttpError(400, e.message);
  const named = e.message.startsWith(e.option!) ? (field === 'size' ? `size: ${e.message}` : field + e.message.slice(e.option!.length)) : e.message;
  return new HttpError(400, named, field);
}

const bad = (message: string, param: string | null = null): never => {
  throw new HttpError(400, message, param);
};

const shown = (value: unknown): string => JSON.stringify(value) ?? String(value);

/** A body's fields, all among `accepted`, with a string `prompt`; null stands for "not given",
 *  as OpenAI's clients send it. */
function fields(body: unknown, accepted: readonly string[]): Record<string, unknown> & { prompt: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) bad(`the body must be a JSON object, got ${shown(body)}`);
  const b = Object.fromEntries(Object.entries(body as Record<string, unknown>).filter(([, v]) => v !== null));
  for (const key of Object.keys(b)) if (!accepted.includes(key)) bad(`unknown field "${key}" (the fields are ${accepted.join(', ')})`, key);
  if (typeof b.prompt !== 'string') bad(b.prompt === undefined ? 'prompt is required' : `prompt must be a string, got ${shown(b.prompt)}`, 'prompt');
  return b as Record<string, unknown> & { prompt: string };
}

type Call = Omit<ImageToImageOptions, 'image'> & { readonly image?: ImageToImageOptions['image'] };

/** The JSON body of POST /v1/images/generations as generate() / imageToImage() options, checked
 *  by the library's own checks (the image decoded), so a bad one never takes a queue place. */
export async function parseGenerationRequest(body: unknown): Promise<Call> {
  const b = fields(body, ACCEPTED);
  if (b.model !== undefined && typeof b.model !== 'string') bad(`model must be a string (it is ignored: this server has one model), got ${shown(b.model)}`, 'model');
  if (b.user !== undefined && typeof b.user !== 'string') bad(`user must be a string, got ${shown(b.user)}`, 'user');
  if (b.response_format === 'url') bad('response_format "url" is not supported: the server keeps no images to link to; use "b64_json" (the default)', 'response_format');
  if (b.response_format !== undefined && b.response_format !== 'b64_json') bad(`response_format must be "b64_json", got ${shown(b.response_format)}`, 'response_format');
  const call: Call = {
    prompt: b.prompt,
    ...size(b.size),
    ...(b.n === undefined ? {} : { imagesPerPrompt: b.n as number }),
    ...(b.seed === undefined ? {} : { seed: seed(b.seed) }),
    ...(b.steps === undefined ? {} : { steps: b.steps as number }),
    ...(b.strength === undefined ? {} : { strength: b.strength as number }),
    ...(b.guidance_scale === undefined ? {} : { guidanceScale: b.guidance_scale as number }),
    ...(b.negative_prompt === undefined ? {} : { negativePrompt: b.negative_prompt as string }),
    ...(b.image === undefined ? {} : { image: await image(b.image) }),
  };
  library(() => resolveGenerate(call, call.image !== undefined));
  return call;
}

/** A seed as a JSON number, or a decimal string for those past 2⁵³ − 1 (exact as a bigint). */
function seed(value: unknown): number | bigint {
  if (typeof value === 'string' && /^\d{1,20}$/.test(value)) return Number.isSafeInteger(Number(value)) ? Number(value) : BigInt(value);
  if (typeof value === 'number') return value; // the library checks the range
  return bad(`seed must be an integer (a decimal string above 2^53 − 1), got ${shown(value)}`, 'seed');
}

/** A base64 PNG, JPEG or WebP (bare, or a data: URL) decoded to RGB. */
async function image(value: unknown): Promise<NonNullable<Call['image']>> {
  const text = typeof value === 'string' ? value.replace(/^data:image\/[\w.+-]+;base64,/, '').replace(/\s+/g, '') : null;
  if (text === null || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(text) || text.length % 4 === 1) bad('image must be a base64 string of a PNG, JPEG or WebP file (or a data: URL of one)', 'image');
  try {
    return await decodeImage(Buffer.from(text!, 'base64'), 'image');
  } catch (e) {
    throw e instanceof UsageError ? new HttpError(400, e.message, 'image') : e;
  }
}

/** The fields of a live update (POST /v1/live/ID). */
const LIVE_UPDATE = ['prompt', 'image', 'strength'];

/** The JSON body of a live update as the session's request, checked. */
export async function parseLiveUpdate(body: unknown): Promise<LiveRequest> {
  const b = fields(body, LIVE_UPDATE);
  if (b.strength !== undefined && b.image === undefined) bad('strength needs image (image-to-image)', 'strength');
  if (b.strength !== undefined) library(() => checkStrength(b.strength));
  return { prompt: b.prompt, ...(b.image === undefined ? {} : { image: await image(b.image) }), ...(b.strength === undefined ? {} : { strength: b.strength as number }) };
}

/** The query of GET /v1/live as live() options: size, seed, steps, strength, guidance_scale,
 *  negative_prompt. */
function liveOptions(query: URLSearchParams): Parameters<ServedPipeline['live']>[0] {
  const known = ['size', 'seed', 'steps', 'strength', 'guidance_scale', 'negative_prompt'];
  for (const key of query.keys()) if (!known.includes(key)) bad(`unknown parameter "${key}" (the parameters are ${known.join(', ')})`, key);
  const number = (name: string): number | undefined => {
    const text = query.get(name);
    if (text === null) return undefined;
    if (text.trim() === '' || !Number.isFinite(Number(text))) bad(`${name} must be a number, got ${shown(text)}`, name);
    return Number(text);
  };
  const seedText = query.get('seed');
  return {
    ...size(query.get('size') ?? undefined),
    ...(seedText === null ? {} : { seed: seed(seedText) }),
    ...(query.has('steps') ? { steps: number('steps') } : {}),
    ...(query.has('strength') ? { strength: number('strength') } : {}),
    ...(query.has('guidance_scale') ? { guidanceScale: number('guidance_scale') } : {}),
    ...(query.has('negative_prompt') ? { negativePrompt: query.get('negative_prompt')! } : {}),
  };
}

/** `check()`, its UsageError as a 400 naming the field. */
function library<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    throw e instanceof UsageError ? requestError(e) : e;
  }
}

/** "WxH" as width and height (the library checks them); none when not given. */
function size(value: unknown): { width?: number; height?: number } {
  if (value === undefined) return {};
  const m = typeof value === 'string' ? /^(\d{1,6})x(\d{1,6})$/.exec(value) : null;
  if (!m) return bad(`size must be "WIDTHxHEIGHT" (e.g. "512x512"), got ${shown(value)}`, 'size');
  return { width: Number(m[1]), height: Number(m[2]) };
}

/** A seed in JSON: a number, or a string when a number would round it. */
const jsonSeed = (s: number | bigint): number | string => (typeof s === 'bigint' ? String(s) : s);

const round = (ms: number): number => Math.round(ms * 10) / 10;

/**
 * One GPU, one holder at a time, in arrival order; at most `limit` waiting. enter() resolves
 * with the release function when it is the caller's turn, throws a 429 HttpError when `limit`
 * wait already, rejects with the signal's reason when it aborts first (the place is freed).
 */
class GpuQueue {
  private held = false;
  private readonly waiting: Array<{ grant: () => void; refuse: (e: unknown) => void }> = [];
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(readonly limit: number) {}

  get length(): number {
    return this.waiting.length;
  }

  get busy(): boolean {
    return this.held;
  }

  enter(signal: AbortSignal): Promise<() => void> {
    if (this.closed) throw new HttpError(503, 'the server is shutting down');
    signal.throwIfAborted();
    if (!this.held && this.waiting.length === 0) {
      this.held = true;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.limit) {
      throw new HttpError(429, `the GPU queue is full (one generation running, ${this.limit} waiting); retry later`, null, { 'Retry-After': '1' });
    }
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiting.splice(this.waiting.indexOf(entry), 1);
        reject(signal.reason);
      };
      const entry = {
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(this.releaser());
        },
        refuse: (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  /** Refuses everyone waiting and every later enter() with a 503. */
  close(): void {
    this.closed = true;
    for (const e of this.waiting.splice(0)) e.refuse(new HttpError(503, 'the server is shutting down'));
  }

  /** Resolves when no one holds the GPU. */
  idle(): Promise<void> {
    return this.held ? new Promise((resolve) => this.idleWaiters.push(resolve)) : Promise.resolve();
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) return next.grant();
      this.held = false;
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    };
  }
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;

/** Whether `host` is a loopback address (the only kind bound without an explicit --host). */
export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host.replace(/^\[(.*)\]$/, '$1'));
}

/** The hostname of a Host header ("localhost:8188", "[::1]:8188"). */
const hostName = (header: string): string => header.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');

/** Why a request was cancelled: its client went away. */
class ClientGone extends Error {}

/**
 * Serves `pipeline` (or the pipeline it will be: until it loads, /health says "loading" and
 * generations get 503) on `host:port`. Resolves once listening; rejects if it cannot listen.
 */
export async function startServer(pipeline: ServedPipeline | Promise<ServedPipeline>, options: ServeOptions): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const queue = new GpuQueue(options.queue ?? DEFAULT_QUEUE);
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const emit = options.onEvent ?? (() => {});
  const served = { completed: 0, cancelled: 0, failed: 0, rejected: 0 };
  let loaded: ServedPipeline | null = null;
  let status: Health['status'] = 'loading';
  Promise.resolve(pipeline).then(
    (p) => {
      loaded = p;
      if (status === 'loading') status = 'ok';
    },
    () => {
      if (status === 'loading') status = 'failed';
    },
  );
  /** Every request being handled, and the controllers of those holding or awaiting the GPU. */
  const handling = new Set<Promise<void>>();
  const cancellable = new Set<AbortController>();
  let lastId = 0;

  const sessions = new Map<string, Live>();
  const maxLive = options.liveSessions ?? DEFAULT_LIVE_SESSIONS;

  const health = (): Health => ({
    status,
    model: options.model,
    adapter: loaded?.gpu.adapterName ?? null,
    dtype: loaded?.dtype ?? null,
    queue: { running: queue.busy ? 1 : 0, waiting: queue.length, limit: queue.limit },
    live: sessions.size,
    requests: handling.size,
    served: { ...served },
  });

  const ready = (): ServedPipeline => {
    if (status === 'ok' && loaded) return loaded;
    const why = status === 'loading' ? 'the model is still loading' : status === 'stopping' ? 'the server is shutting down' : 'the model failed to load';
    throw new HttpError(503, why, null, status === 'loading' ? { 'Retry-After': '5' } : {});
  };

  async function generations(req: IncomingMessage, res: ServerResponse, arrived: number): Promise<void> {
    const p = ready();
    const controller = new AbortController();
    const { signal } = controller;
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new ClientGone('the client went away'));
    });
    const call = await parseGenerationRequest(await readJson(req, maxBody));
    const id = ++lastId;
    let release: () => void;
    cancellable.add(controller);
    try {
      let entered: Promise<() => void>;
      try {
        entered = queue.enter(signal);
      } catch (e) {
        if (e instanceof HttpError && e.status === 429) served.rejected++;
        throw e;
      }
      emit({ type: 'queued', id, prompt: call.prompt as string, waiting: queue.length });
      try {
        release = await entered;
      } catch (e) {
        served.cancelled++;
        emit({ type: 'cancelled', id, running: false });
        throw e;
      }
      const started = performance.now();
      emit({ type: 'started', id });
      let result: Awaited<ReturnType<Pipeline['generate']>>;
      try {
        const { image } = call;
        result = await (image ? p.imageToImage({ ...call, image, signal }) : p.generate({ ...call, signal }));
      } catch (e) {
        if (signal.aborted) {
          served.cancelled++;
          emit({ type: 'cancelled', id, running: true });
        } else served.failed++;
        throw e;
      } finally {
        release();
      }
      // The PNGs encode while the next generation runs.
      const data = await Promise.all(result.images.map(async (im) => ({ b64_json: Buffer.from(await im.png()).toString('base64'), seed: jsonSeed(result.seed) })));
      const timings = { queue: round(started - arrived), ...Object.fromEntries(Object.entries(result.timings).map(([k, v]) => [k, round(v)])), total: round(performance.now() - arrived) };
      served.completed++;
      sendJson(res, 200, { created: Math.floor(Date.now() / 1000), data, timings });
    } finally {
      cancellable.delete(controller);
    }
  }

  /** GET /v1/live: opens a session and streams its frames until the client closes the stream. */
  async function openLive(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const p = ready();
    const options = liveOptions(new URL(req.url ?? '/', 'http://localhost').searchParams);
    if (sessions.size >= maxLive) throw new HttpError(429, `${maxLive} live sessions are open already (the most this server takes); retry later`, null, { 'Retry-After': '5' });
    const live = new Live(randomUUID(), library(() => p.live(options)), res, queue);
    sessions.set(live.id, live);
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    const { width, height } = { width: DEFAULT_SIZE, height: DEFAULT_SIZE, ...options };
    live.event('session', { id: live.id, update: `/v1/live/${live.id}`, seed: jsonSeed(live.session.seed), size: `${width}x${height}` });
    const keepAlive = setInterval(() => res.destroyed || res.write(': keep-alive\n\n'), KEEPALIVE_MS);
    res.on('close', () => void live.close());
    try {
      await live.stream();
    } finally {
      clearInterval(keepAlive);
      sessions.delete(live.id);
      res.end();
    }
  }

  /** POST /v1/live/ID: the session's next request; 202 with its number (frames report it). */
  async function updateLive(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const live = sessions.get(id);
    if (!live) throw new HttpError(404, `no live session ${JSON.stringify(id)} (open one with GET /v1/live; a session ends when its event stream closes)`);
    const request = await parseLiveUpdate(await readJson(req, maxBody));
    sendJson(res, 202, { request: live.update(request) });
  }

  const routes: Record<string, Record<string, (req: IncomingMessage, res: ServerResponse, arrived: number) => Promise<void>>> = {
    '/v1/images/generations': { POST: generations },
    '/v1/live': { GET: openLive },
    '/health': {
      GET: async (_, res) => {
        const h = health();
        sendJson(res, h.status === 'ok' ? 200 : 503, h);
      },
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const arrived = performance.now();
    const path = (req.url ?? '/').split('?')[0]!;
    let error: string | undefined;
    res.on('finish', () => emit({ type: 'response', method: req.method ?? '', path, status: res.statusCode, ms: performance.now() - arrived, ...(error === undefined ? {} : { error }) }));
    try {
      const hostHeader = req.headers.host;
      if (isLoopback(host) && hostHeader !== undefined && !isLoopback(hostName(hostHeader))) {
        throw new HttpError(403, `Host ${JSON.stringify(hostHeader)} is not this server's: it serves loopback clients only (start it with --host to serve others)`);
      }
      const session = /^\/v1\/live\/([^/]+)$/.exec(path)?.[1];
      const route = session === undefined ? routes[path] : { POST: (rq: IncomingMessage, rs: ServerResponse) => updateLive(rq, rs, session) };
      if (!route) throw new HttpError(404, `no such endpoint: ${path} (POST /v1/images/generations, GET /v1/live, POST /v1/live/ID, GET /health)`);
      const method = req.method === 'HEAD' && route.GET ? 'GET' : (req.method ?? '');
      const serve = route[method];
      if (!serve) throw new HttpError(405, `${path} takes ${Object.keys(route).join(', ')}, not ${req.method}`, null, { Allow: Object.keys(route).join(', ') });
      await serve(req, res, arrived);
    } catch (e) {
      if (e instanceof ClientGone) return;
      const http = e instanceof HttpError ? e : e instanceof UsageError ? requestError(e) : null;
      if (!http) error = (e as Error)?.message ?? String(e);
      const answer = http ?? new HttpError(500, `generation failed: ${error}`);
      // A body left unread (413) is not drained: the connection closes after the answer.
      sendJson(res, answer.status, { error: { message: answer.message, type: ERROR_TYPES[answer.status] ?? 'error', param: answer.param } }, answer.status === 413 ? { ...answer.headers, Connection: 'close' } : answer.headers);
    }
  };

  const server = createServer((req, res) => {
    const work = handle(req, res);
    handling.add(work);
    void work.finally(() => handling.delete(work));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? DEFAULT_PORT, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | null = null;

  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    health,
    close({ cancel = false } = {}) {
      if (cancel) for (const c of cancellable) c.abort(new HttpError(503, 'cancelled: the server is shutting down'));
      closing ??= (async () => {
        status = 'stopping';
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        queue.close();
        await Promise.all([...sessions.values()].map((live) => live.close()));
        await queue.idle();
        while (handling.size > 0) await Promise.allSettled([...handling]);
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers }).end(text);
}

/** A JSON body (Content-Type application/json, at most `max` bytes), parsed. */
async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  // Also what keeps a web page of another origin from posting here without a CORS preflight.
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, `the body must be JSON sent as Content-Type: application/json, got ${type === '' ? 'none' : JSON.stringify(type)} (curl: -H 'Content-Type: application/json')`);
  }
  const text = (await readBody(req, max)).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    return bad(`the body is not valid JSON (${(e as Error).message})`);
  }
}

/**
 * A live session behind an event stream. It holds the GPU queue's place only while it has a
 * frame to draw: an update that finds it not holding the GPU waits in the queue (newer updates
 * replace it there), and the place is given back once the frame of the newest update is out.
 * Update numbers are the server's (a waiting update replaced never reaches the session).
 */
class Live {
  private numbered = 0;
  /** The session's number of the newest update it got, and the server's number of each. */
  private newest = 0;
  private readonly numbers = new Map<number, number>();
  private release: (() => void) | null = null;
  private waiting: { readonly request: LiveRequest; readonly number: number } | null = null;
  private entering = false;
  private compiled = false;
  private readonly controller = new AbortController();
  private closing: Promise<void> | null = null;

  constructor(
    readonly id: string,
    readonly session: LiveSession<Uint8Array>,
    private readonly res: ServerResponse,
    private readonly queue: GpuQueue,
  ) {}

  event(name: string, data: unknown): void {
    if (!this.res.destroyed) this.res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Asks for a frame of `request`; its number. Throws a 429 HttpError when it must queue and the queue is full. */
  update(request: LiveRequest): number {
    if (this.closing) throw new HttpError(404, `live session ${this.id} has ended`);
    const number = ++this.numbered;
    if (this.release) {
      this.send(request, number);
      return number;
    }
    if (!this.entering) {
      const entered = this.queue.enter(this.controller.signal);
      this.entering = true;
      entered.then(
        (release) => this.granted(release),
        (e) => {
          this.entering = false;
          if (!this.controller.signal.aborted) this.fail(e);
        },
      );
    }
    this.waiting = { request, number };
    return number;
  }

  /** The frames as `frame` events until the session closes (or an `error` event if it fails). */
  async stream(): Promise<void> {
    try {
      for await (const frame of this.session.frames()) {
        const number = this.numbers.get(frame.request)!;
        for (const n of this.numbers.keys()) if (n <= frame.request) this.numbers.delete(n);
        if (frame.request === this.newest) this.giveBack();
        const t = frame.timings;
        this.event('frame', {
          request: number,
          prompt: frame.prompt,
          b64_json: Buffer.from(await frame.image.png()).toString('base64'),
          timings: { queue: round(t.queue), encode: round(t.encode), denoise: round(t.denoise), decode: round(t.decode), total: round(t.total) },
          session: this.session.stats(),
        });
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.giveBack();
    }
  }

  /** Ends the session: a waiting update leaves the queue, the running frame is cancelled. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.controller.abort(new ClientGone('the live session ended'));
      await this.session.close();
      this.giveBack();
      if (!this.res.writableEnded) this.res.end();
    })();
    return this.closing;
  }

  private async granted(release: () => void): Promise<void> {
    this.entering = false;
    this.release = release;
    try {
      // The first frame's pipelines compile while the session holds the GPU.
      if (!this.compiled) await this.session.ready();
      this.compiled = true;
      const next = this.waiting;
      this.waiting = null;
      if (next && !this.closing) this.send(next.request, next.number);
      else this.giveBack();
    } catch (e) {
      this.fail(e);
    }
  }

  private send(request: LiveRequest, number: number): void {
    this.newest = this.session.update(request);
    this.numbers.set(this.newest, number);
  }

  private giveBack(): void {
    const release = this.release;
    this.release = null;
    release?.();
  }

  private fail(e: unknown): void {
    const http = e instanceof HttpError ? e : e instanceof UsageError ? requestError(e) : new HttpError(500, `live session failed: ${(e as Error)?.message ?? String(e)}`);
    this.event('error', { error: { message: http.message, type: ERROR_TYPES[http.status] ?? 'error', param: http.param } });
    void this.close();
  }
}

/** The request body, at most `max` bytes (413 beyond, before reading it when Content-Length says so). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const tooLarge = (bytes: string): HttpError => new HttpError(413, `the request body is ${bytes} bytes, above this server's limit of ${max} (--max-body)`);
  const declared = Number(req.headers['content-length']);
  if (declared > max) return Promise.reject(tooLarge(String(declared)));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= max) return void chunks.push(chunk);
      req.off('data', onData);
      req.pause();
      reject(tooLarge(`over ${max}`));
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    // A client that goes away mid-body: nobody is left to answer.
    req.once('close', () => {
      if (!req.complete) reject(new ClientGone('the client went away'));
    });
  });
}
