// One helper packs every kernel's uniforms, so no launcher computes padding by hand.
// Fields are 4-byte scalars only (u32, i32, f32): WGSL lays those out back to back,
// so the byte offset of field i is 4·i and the struct is padded to 16 bytes.

export type ScalarType = 'u32' | 'i32' | 'f32';

export class UniformLayout<K extends string> {
  readonly byteSize: number;
  /** The WGSL declaration of `struct Params`, inserted into the kernel source. */
  readonly wgsl: string;

  constructor(readonly fields: ReadonlyArray<readonly [K, ScalarType]>) {
    this.byteSize = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
    this.wgsl = `struct Params {\n${fields.map(([n, t]) => `  ${n}: ${t},`).join('\n')}\n}\n`;
  }

  /** Packs values into `out` at `byteOffset`; every field must be given and in range. */
  pack(values: Record<K, number>, out: DataView, byteOffset: number): void {
    this.fields.forEach(([name, type], i) => {
      const v = values[name];
      if (typeof v !== 'number' || Number.isNaN(v)) throw new Error(`uniform ${name}: missing or NaN (${v})`);
      const at = byteOffset + 4 * i;
      if (type === 'f32') out.setFloat32(at, v, true);
      else if (type === 'u32') {
        if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform ${name}: ${v} is not a u32`);
        out.setUint32(at, v, true);
      } else {
        if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new Error(`uniform ${name}: ${v} is not an i32`);
        out.setInt32(at, v, true);
      }
    });
  }
}

/** The field names of a layout. */
export type UniformKey<L> = L extends UniformLayout<infer K> ? K : never;

/** A layout of `fields`; `const` keeps their names literal inside defineKernel({ layout: uniforms(…) }),
 *  so a dispatch's uniforms are typed by them. */
export function uniforms<const K extends string>(...fields: Array<readonly [K, ScalarType]>): UniformLayout<K> {
  return new UniformLayout(fields);
}
