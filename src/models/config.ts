import { UsageError } from '../errors.js';

// Typed reads from a component's config.json. Each read names the file and the key in its
// error, so a wrong or hand-edited config is reported precisely instead of producing a
// model of the wrong shape. A default stands for the reference library's own default,
// used when the file leaves the key out.

export class ConfigReader {
  private readonly fields: Record<string, unknown>;

  constructor(
    json: unknown,
    /** Where the config came from, e.g. "text_encoder/config.json", for messages. */
    readonly where: string,
  ) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UsageError(`${where}: not a JSON object`);
    this.fields = json as Record<string, unknown>;
  }

  /** A positive integer (sizes, counts, ids ≥ 0 with `min: 0`). */
  int(key: string, fallback?: number, min = 1): number {
    const v = this.value(key, fallback);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.fail(key, v, `an integer ≥ ${min}`);
    return v as number;
  }

  /** A finite positive number (eps, scales). */
  positive(key: string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, v, 'a positive number');
    return v as number;
  }

  /** One of the listed strings: the variants this engine implements. */
  oneOf<const S extends string>(key: string, allowed: readonly S[], fallback?: S): S {
    const v = this.value(key, fallback);
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.fail(key, v, `one of ${allowed.map((s) => JSON.stringify(s)).join(', ')} (the variants supported)`);
    }
    return v as S;
  }

  /** A boolean flag. */
  bool(key: string, fallback?: boolean): boolean {
    const v = this.value(key, fallback);
    if (typeof v !== 'boolean') this.fail(key, v, 'true or false');
    return v as boolean;
  }

  /** One of the listed JSON scalars (null, booleans, numbers, strings): for keys whose other
   *  settings this engine does not implement, e.g. `literal('class_embed_type', [null], null)`. */
  literal<const V extends string | number | boolean | null>(key: string, allowed: readonly V[], fallback?: V): V {
    const v = this.value(key, fallback);
    if (!(allowed as readonly unknown[]).includes(v)) this.fail(key, v, `${allowed.map((s) => JSON.stringify(s)).join(' or ')} (the only setting supported)`);
    return v as V;
  }

  /** A per-level setting: one integer for every level, or a list of exactly `levels` integers;
   *  with `levels` undefined, a non-empty list of any length (it defines the levels). */
  intList(key: string, levels?: number, fallback?: number | readonly number[], min = 1): number[] {
    const v = this.value(key, fallback);
    const list = Array.isArray(v) ? (v as unknown[]) : levels === undefined ? [] : Array<unknown>(levels).fill(v);
    const okLength = levels === undefined ? list.length > 0 : list.length === levels;
    if (!okLength || !list.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= min)) {
      this.fail(key, v, levels === undefined ? `a non-empty list of integers ≥ ${min}` : `an integer ≥ ${min} or a list of ${levels} of them`);
    }
    return list as number[];
  }

  /** A non-empty list whose every entry is one of the listed strings. */
  oneOfEach<const S extends string>(key: string, allowed: readonly S[]): S[] {
    const v = this.value(key, undefined);
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => (allowed as readonly unknown[]).includes(x))) {
      this.fail(key, v, `a list of ${allowed.map((s) => JSON.stringify(s)).join(', ')} (the variants supported)`);
    }
    return v as S[];
  }

  private value(key: string, fallback: unknown): unknown {
    const v = this.fields[key];
    if (v !== undefined) return v;
    if (fallback === undefined) throw new UsageError(`${this.where}: missing required key "${key}"`);
    return fallback;
  }

  private fail(key: string, value: unknown, wanted: string): never {
    throw new UsageError(`${this.where}: "${key}" is ${JSON.stringify(value)}, expected ${wanted}`);
  }
}
