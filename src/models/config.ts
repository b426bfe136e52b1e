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
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${where}: not a JSON object`);
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

  private value(key: string, fallback: unknown): unknown {
    const v = this.fields[key];
    if (v !== undefined) return v;
    if (fallback === undefined) throw new Error(`${this.where}: missing required key "${key}"`);
    return fallback;
  }

  private fail(key: string, value: unknown, wanted: string): never {
    throw new Error(`${this.where}: "${key}" is ${JSON.stringify(value)}, expected ${wanted}`);
  }
}
