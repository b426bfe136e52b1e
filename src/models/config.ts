import { excerpt, UsageError } from '../errors.js';
import type { Bound, Bounds } from './config-bounds.js';

// Typed reads from a component's config.json. Each read names the file and the key in its
// error, so a wrong or hand-edited config is reported precisely instead of producing a
// model of the wrong shape. A default stands for the reference library's own default,
// used when the file leaves the key out. Every number is checked against its range in
// config-bounds.ts as it is read, before anything is built from it.

export class ConfigReader<B extends Bounds = Bounds> {
  private readonly fields: Record<string, unknown>;

  constructor(
    json: unknown,
    /** Where the config came from, e.g. "text_encoder/config.json", for messages. */
    readonly where: string,
    /** The plausible range of each numeric key (CONFIG_BOUNDS.unet, …). */
    private readonly bounds: B,
  ) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UsageError(`${where}: not a JSON object`);
    this.fields = json as Record<string, unknown>;
  }

  /** An integer in the key's range (sizes, counts, ids). */
  int(key: keyof B & string, fallback?: number): number {
    const v = this.value(key, fallback);
    if (!this.isInt(v, this.bounds[key])) this.fail(key, v, `an integer in ${this.range(key)}`);
    return v as number;
  }

  /** A finite number in the key's range (eps, scales, betas). */
  number(key: keyof B & string, fallback?: number): number {
    const v = this.value(key, fallback);
    const { min, max } = this.bounds[key]!;
    if (typeof v !== 'number' || !(v >= min && v <= max)) this.fail(key, v, `a number in ${this.range(key)}`);
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
   *  with `levels` undefined, a list whose length is in the range of the key 'levels' (it
   *  defines the levels). Each integer in the key's range. */
  intList(key: keyof B & string, levels?: number, fallback?: number | readonly number[]): number[] {
    const v = this.value(key, fallback);
    const list = Array.isArray(v) ? (v as unknown[]) : levels === undefined ? [] : Array<unknown>(levels).fill(v);
    const okLength = levels === undefined ? this.isInt(list.length, this.bounds.levels) : list.length === levels;
    if (!okLength || !list.every((x) => this.isInt(x, this.bounds[key]))) {
      const range = this.range(key);
      this.fail(key, v, levels === undefined ? `a list of ${this.range('levels')} integers in ${range}` : `an integer in ${range} or a list of ${levels} of them`);
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

  private isInt(v: unknown, bound: Bound | undefined): boolean {
    if (!bound) throw new Error(`${this.where}: no range for a key in config-bounds.ts`); // our bug
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= bound.min && v <= bound.max;
  }

  private range(key: string): string {
    const { min, max } = this.bounds[key]!;
    return `[${min}, ${max}]`;
  }

  private fail(key: string, value: unknown, wanted: string): never {
    throw new UsageError(`${this.where}: "${key}" is ${excerpt(JSON.stringify(value) ?? String(value), 160)}, expected ${wanted}`);
  }
}
