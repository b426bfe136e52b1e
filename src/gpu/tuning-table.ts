// The stored tuning table of one adapter, as `sdxl-turbo tune` writes it (Node: a JSON file in
// the user cache folder, src/node/tuning-store.ts; browser: the same JSON in IndexedDB,
// src/io/tuning-store-browser.ts):
//   { "version": 1,
//     "adapter": { "vendor", "architecture", "device", "description"[, "driver"] },
//     "entries": { "<op>@<kernel hashes>|<shape key>": { "label", "variant", "ms": { variant: median ms } } } }
// An entry's key names the kernel sources it was measured on, so an edited kernel misses its
// old entries (the heuristic decides) until tuned again. A table that cannot be used (unreadable,
// another version, another adapter, malformed) is reported in one line and no choice is applied.

import { fnv1a } from './pipeline-cache.js';
import type { Gpu } from './runtime.js';
import type { TuningChoices } from './tuning.js';

export const TUNING_TABLE_VERSION = 1;

/** What a table is measured on: GPUAdapterInfo's fields (Dawn's description carries the driver version). */
export interface AdapterIdentity {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** Where the implementation reports one (not a standard GPUAdapterInfo field). */
  readonly driver?: string;
}

export function adapterIdentity(info: GPUAdapterInfo | undefined): AdapterIdentity {
  const driver = (info as { driver?: unknown } | undefined)?.driver;
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
    ...(typeof driver === 'string' && driver !== '' ? { driver } : {}),
  };
}

/** The file (or record) name of an adapter's table: a hash of its identity. */
export function adapterHash(adapter: AdapterIdentity): string {
  return fnv1a(JSON.stringify([adapter.vendor, adapter.architecture, adapter.device, adapter.description, adapter.driver ?? '']));
}

export function sameAdapter(a: AdapterIdentity, b: AdapterIdentity): boolean {
  return adapterHash(a) === adapterHash(b);
}

export function describeAdapter(a: AdapterIdentity): string {
  return [a.description || a.device, a.vendor, a.architecture, a.driver].filter(Boolean).join(' / ') || 'unknown adapter';
}

export interface TunedEntry {
  /** For people, e.g. "linear 4096×640→640 +b f16". */
  readonly label: string;
  /** The fastest variant measured: the one generation uses. */
  readonly variant: string;
  /** Median milliseconds of each candidate that ran. */
  readonly ms: Readonly<Record<string, number>>;
}

export interface TuningTable {
  readonly version: typeof TUNING_TABLE_VERSION;
  readonly adapter: AdapterIdentity;
  /** `${op.id}|${key}` (TunableCall) → the measured choice. */
  readonly entries: Readonly<Record<string, TunedEntry>>;
}

/** A table's JSON; throws an Error naming `where` and what is wrong. */
export function parseTuningTable(text: string, where: string): TuningTable {
  const fail = (what: string): never => {
    throw new Error(`${where}: ${what}`);
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`not JSON (${(e as Error).message})`);
  }
  if (!isRecord(json)) return fail('not a JSON object');
  if (json.version !== TUNING_TABLE_VERSION) fail(`version ${JSON.stringify(json.version)}, this version reads ${TUNING_TABLE_VERSION}`);
  const a = json.adapter;
  const fields = ['vendor', 'architecture', 'device', 'description'] as const;
  if (!isRecord(a) || fields.some((f) => typeof a[f] !== 'string') || (a.driver !== undefined && typeof a.driver !== 'string')) fail('"adapter" must have string vendor, architecture, device and description');
  const adapter = a as unknown as AdapterIdentity;
  if (!isRecord(json.entries)) return fail('"entries" must be an object');
  const entries: Record<string, TunedEntry> = {};
  for (const [key, e] of Object.entries(json.entries)) {
    const ok = isRecord(e) && typeof e.label === 'string' && typeof e.variant === 'string' && isRecord(e.ms) && Object.values(e.ms).every((ms) => typeof ms === 'number' && Number.isFinite(ms) && ms >= 0);
    if (!ok || !/^[^|@]+@[^|]*\|/.test(key)) fail(`entry ${JSON.stringify(key).slice(0, 80)} must be "op@hash|key": { label, variant, ms: { variant: milliseconds } }`);
    const entry = e as unknown as TunedEntry;
    entries[key] = { label: entry.label, variant: entry.variant, ms: entry.ms };
  }
  const driver = adapter.driver === undefined ? {} : { driver: adapter.driver };
  return { version: TUNING_TABLE_VERSION, adapter: { vendor: adapter.vendor, architecture: adapter.architecture, device: adapter.device, description: adapter.description, ...driver }, entries };
}

export function serializeTuningTable(table: TuningTable): string {
  return `${JSON.stringify(table, null, 2)}\n`;
}

/**
 * `measured` added to `stored` (the same adapter's, or null): entries of the same call are
 * replaced, and so are the entries of an op measured now under other kernel hashes (stale).
 */
export function mergeTuningTables(stored: TuningTable | null, measured: TuningTable): TuningTable {
  const opOf = (key: string): string => key.slice(0, key.indexOf('|'));
  const nameOf = (key: string): string => key.slice(0, key.indexOf('@'));
  const current = new Map(Object.keys(measured.entries).map((k) => [nameOf(k), opOf(k)]));
  const kept = Object.entries(stored?.entries ?? {}).filter(([k]) => !current.has(nameOf(k)) || current.get(nameOf(k)) === opOf(k));
  return { version: TUNING_TABLE_VERSION, adapter: measured.adapter, entries: { ...Object.fromEntries(kept), ...measured.entries } };
}

export function tuningChoices(table: TuningTable): TuningChoices {
  return new Map(Object.entries(table.entries).map(([key, e]) => [key, e.variant]));
}

/** Where the tables live (Node: a folder of JSON files; browser: IndexedDB). */
export interface TuningStore {
  /** Where `adapter`'s table is, for messages (a path, an IndexedDB record). */
  where(adapter: AdapterIdentity): string;
  /** The stored text of `adapter`'s table, null when there is none. */
  read(adapter: AdapterIdentity): Promise<string | null>;
  /** Replaces `adapter`'s table with `text`, whole or not at all. */
  write(adapter: AdapterIdentity, text: string): Promise<void>;
}

/** `adapter`'s table in `store`: null when there is none; throws an Error naming where it is
 *  and what is wrong when it cannot be used. */
export async function loadTuningTable(store: TuningStore, adapter: AdapterIdentity): Promise<TuningTable | null> {
  const where = store.where(adapter);
  let text: string | null;
  try {
    text = await store.read(adapter);
  } catch (e) {
    throw new Error(`${where}: cannot be read (${(e as Error).message})`, { cause: e });
  }
  if (text === null) return null;
  const table = parseTuningTable(text, where);
  if (!sameAdapter(table.adapter, adapter)) throw new Error(`${where}: measured on ${describeAdapter(table.adapter)}, not this adapter (${describeAdapter(adapter)})`);
  return table;
}

/** Adds `measured` to the stored table of its adapter (an unusable stored one is replaced);
 *  returns where it is stored and the merged table. */
export async function saveTuningTable(store: TuningStore, measured: TuningTable): Promise<{ where: string; table: TuningTable }> {
  const stored = await loadTuningTable(store, measured.adapter).catch(() => null);
  const table = mergeTuningTables(stored, measured);
  await store.write(measured.adapter, serializeTuningTable(table));
  return { where: store.where(measured.adapter), table };
}

/**
 * Puts the stored choices for `gpu`'s adapter into `gpu.tuning` (before the run's pipelines are
 * planned and compiled); returns how many. A table that cannot be used is `warn`ed in one line
 * and every launcher keeps its heuristic.
 */
export async function applyStoredTuning(gpu: Gpu, store: TuningStore, warn: (line: string) => void): Promise<number> {
  try {
    const table = await loadTuningTable(store, gpu.adapter);
    gpu.tuning.use(table ? tuningChoices(table) : new Map());
  } catch (e) {
    warn(`ignoring the tuning table ${(e as Error).message}; using the built-in variant choices (re-run sdxl-turbo tune)`);
    gpu.tuning.use(new Map());
  }
  return gpu.tuning.size;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
