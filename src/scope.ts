// Ownership scopes for activations, as tf.js's `tidy`: a forward allocates freely and every
// activation it made goes back to the pool when its scope ends, except what it returns. Scopes
// own storages, not tensors, so a reshape view keeps its whole storage alive. Weights are never
// owned (their registry releases them); activations made outside any scope are the caller's.

/** What a scope owns: a tensor's storage (its reshape views share it). */
export interface Owned {
  /** false for exact (weight) allocations, which no scope may own. */
  readonly pooled: boolean;
  /** Idempotent: a storage released by hand is skipped at its scope's end. */
  release(): void;
}

/** The key under which a Tensor exposes its storage to the scopes. */
export const STORAGE: unique symbol = Symbol('storage');

interface HasStorage {
  readonly [STORAGE]: Owned;
}

/** The open scopes, innermost last, each with the storages it owns. */
const open: Array<Set<Owned>> = [];

/** Gives a new pooled storage to the innermost scope (tensor.ts calls it once per storage). */
export function adopt(storage: Owned): void {
  open[open.length - 1]?.add(storage);
}

/**
 * Runs `fn` (synchronous) in a new scope. When it returns, every storage the scope owns that
 * is not reachable from the result (a Tensor, or arrays, plain objects and Maps holding them)
 * is released; the reachable ones move to the enclosing scope (none: the caller owns them).
 * When it throws, everything the scope owns is released and the error propagates.
 */
export function tidy<T>(fn: () => T): T {
  const owned = new Set<Owned>();
  open.push(owned);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    open.pop();
    for (const s of owned) s.release();
    throw error;
  }
  open.pop();
  if (result instanceof Promise) {
    for (const s of owned) s.release();
    throw new Error('tidy: fn returned a Promise; a scope only spans synchronous code');
  }
  const survivors = storagesIn(result);
  const parent = open[open.length - 1];
  for (const s of owned) {
    if (!survivors.has(s)) s.release();
    else parent?.add(s);
  }
  return result;
}

/** Takes `t` out of every scope, as tf.js's keep: no scope releases it; its owner is the caller. */
export function keep<T extends HasStorage>(t: T): T {
  for (const owned of open) owned.delete(t[STORAGE]);
  return t;
}

/**
 * Moves `t` into the innermost scope, which then releases it at its end unless it is returned:
 * how a function consumes an argument whose last use it is (the UNet's skip connections).
 */
export function take<T extends HasStorage>(t: T): T {
  const storage = t[STORAGE];
  if (!storage.pooled) throw new Error('take: weights are owned by their registry, not by a scope');
  keep(t);
  adopt(storage);
  return t;
}

/**
 * x → steps[0] → steps[1] → …, each step in a scope nested in the next one's, so an
 * intermediate is released once the step that consumes it has returned (unless that step's
 * result still holds it); `x` itself is left as it is. nn.Sequential with torch's lifetimes.
 */
export function chain<T>(x: T, ...steps: ReadonlyArray<(h: T) => T>): T {
  const through = (n: number): T => (n === 0 ? x : tidy(() => steps[n - 1]!(through(n - 1))));
  return through(steps.length);
}

function storagesIn(value: unknown, found = new Set<Owned>(), seen = new Set<object>()): Set<Owned> {
  if (typeof value !== 'object' || value === null || seen.has(value)) return found;
  seen.add(value);
  if (STORAGE in value) found.add((value as HasStorage)[STORAGE]);
  else if (Array.isArray(value)) for (const v of value) storagesIn(v, found, seen);
  else if (value instanceof Map) for (const [k, v] of value) [k, v].forEach((x) => storagesIn(x, found, seen));
  else if ([Object.prototype, null].includes(Object.getPrototypeOf(value))) for (const v of Object.values(value)) storagesIn(v, found, seen);
  return found;
}
