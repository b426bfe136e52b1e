// `sdxl-turbo serve`: loads the model with generate's flags (cli.ts LOAD_OPTIONS, parsed and
// loaded by the same code) and serves it over HTTP (serve.ts) until SIGINT or SIGTERM. It
// listens before the model loads, so a taken port fails at once and a load balancer's health
// check sees "loading" (503) until the model is ready.

import { type CliIo, flagError, type Flags, HELP, integer, LOAD_OPTIONS, loadArgs, openPipeline, parse } from '../cli.js';
import { usage } from '../errors.js';
import type { Pipeline } from '../index.js';
import { ProgressReporter } from './progress.js';
import { DEFAULT_MAX_BODY, DEFAULT_PORT, DEFAULT_QUEUE, isLoopback, type ServeEvent, startServer } from './serve.js';

// A function, not a constant: cli.ts imports this module, so LOAD_OPTIONS is not yet defined
// while this module initializes.
const serveOptions = () =>
  ({
    ...LOAD_OPTIONS,
    host: { type: 'string' },
    port: { type: 'string' },
    queue: { type: 'string' },
    'max-body': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  }) as const;

/** A whole number option in [min, max]. */
function bounded(name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  const value = integer(name, text) ?? fallback;
  if (value < min || value > max) usage(`${name} must be in [${min}, ${max}], got ${value}`);
  return value;
}

/** The --verbose log: one line per request through the queue and per response. */
function logLine(e: ServeEvent): string {
  switch (e.type) {
    case 'queued':
      return `#${e.id} queued (${e.waiting} waiting): ${JSON.stringify(e.prompt.length > 60 ? `${e.prompt.slice(0, 57)}…` : e.prompt)}`;
    case 'started':
      return `#${e.id} started`;
    case 'cancelled':
      return `#${e.id} cancelled ${e.running ? 'while running' : 'while waiting'}`;
    case 'response':
      return `${e.method} ${e.path} ${e.status} ${e.ms.toFixed(0)} ms${e.error === undefined ? '' : `: ${e.error}`}`;
  }
}

export async function serve(argv: string[], io: CliIo): Promise<void> {
  const v: Flags<ReturnType<typeof serveOptions>> = parse(serveOptions(), argv);
  if (v.help) return io.out(HELP);
  const load = loadArgs(v);
  const host = v.host ?? '127.0.0.1';
  const port = bounded('--port', v.port, DEFAULT_PORT, 0, 65535);
  const queue = bounded('--queue', v.queue, DEFAULT_QUEUE, 0, 10_000);
  const maxBodyBytes = bounded('--max-body', v['max-body'], DEFAULT_MAX_BODY, 1024, 2 ** 31);
  const progress = new ProgressReporter(io.progress);
  const abortLoad = new AbortController();
  const loading = openPipeline(load, { onProgress: progress.update.bind(progress), signal: abortLoad.signal, onWarning: (m) => io.err(`sdxl-turbo: warning: ${m}`) });
  // Answered by the server (503 "failed") and by the await below, never unhandled.
  loading.catch(() => {});
  const server = await startServer(loading, {
    model: load.model,
    host,
    port,
    queue,
    maxBodyBytes,
    onEvent: (e) => {
      if (load.verbose) io.out(logLine(e));
      else if (e.type === 'response' && e.error !== undefined) io.err(`sdxl-turbo: ${logLine(e)}`);
    },
  }).catch(async (e: NodeJS.ErrnoException) => {
    abortLoad.abort(e);
    await loading.then((p) => p.dispose(), () => {});
    throw new Error(`cannot listen on ${host}:${port} (${e.code ?? e.message})`, { cause: e });
  });
  if (!isLoopback(host)) io.err(`sdxl-turbo: warning: serving on ${host} without authentication: anyone who can reach ${server.url} can use this GPU`);
  let pipeline: Pipeline | null = null;
  // The first SIGINT/SIGTERM stops (a load in progress is abandoned), a second one also
  // cancels the running generation.
  let signals = 0;
  let stopped!: () => void;
  const stopping = new Promise<void>((resolve) => (stopped = resolve));
  const stop = (): void => {
    signals++;
    if (signals === 1) io.err(`sdxl-turbo: stopping${pipeline ? ': finishing the running generation (again to cancel it)' : ''}`);
    if (!pipeline) abortLoad.abort(new Error('stopped while loading'));
    void server.close({ cancel: signals > 1 }).then(stopped);
  };
  process.on('SIGINT', stop).on('SIGTERM', stop);
  try {
    io.out(`loading ${load.model}; listening on ${server.url} (GET /health says when it is ready)`);
    try {
      pipeline = await loading;
    } catch (e) {
      if (!abortLoad.signal.aborted) throw e;
      return await stopping;
    }
    progress.done();
    if (load.verbose) for (const line of pipeline.describe()) io.out(line);
    io.out(`ready: POST ${server.url}/v1/images/generations, GET ${server.url}/health (Ctrl-C stops)`);
    await stopping;
  } catch (e) {
    await server.close({ cancel: true });
    throw flagError(e, undefined);
  } finally {
    process.off('SIGINT', stop).off('SIGTERM', stop);
    progress.done();
    await pipeline?.dispose();
  }
}
