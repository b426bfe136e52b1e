// 8-bit weight files (docs/Q8.md), as `sdxl-turbo quantize` writes them: a component whose
// config.json says "quantization" holds each Linear and conv weight X as `X` (I8, the weight's
// shape) and `X_scale` (F16, (rows, ceil(K / 32))). The strict reader accepts I8 there and
// nowhere else: in any other weight file an I8 tensor is an error naming it.

import type { SafetensorsFile } from './safetensors.js';
import type { HostTensor, TensorEntry, TensorSource } from './tensor-source.js';

/** The "quantization" entry of a quantized component's config.json. */
export const Q8_CONFIG = { method: 'q8', block_size: 32, scale_dtype: 'float16', symmetric: true } as const;

/** The scales of 8-bit tensor `name`. */
export const scaleName = (name: string): string => `${name}_scale`;

/** Whether a component's config.json declares 8-bit weights; an error naming the file when
 *  its "quantization" is not the one this reader knows. */
export function isQuantized(config: Readonly<Record<string, unknown>>, where: string): boolean {
  const q = config.quantization;
  if (q === undefined) return false;
  const ok = typeof q === 'object' && q !== null && !Array.isArray(q) &&
    Object.entries(Q8_CONFIG).every(([k, v]) => (q as Record<string, unknown>)[k] === v);
  if (!ok) throw new Error(`${where}: "quantization" is ${JSON.stringify(q)}; the only one supported is ${JSON.stringify(Q8_CONFIG)}`);
  return true;
}

/** An error if `file` holds an I8 tensor: `config` names the config.json that would allow it. */
export function refuseInt8(file: SafetensorsFile, config: string): void {
  const int8 = [...file.raw.values()].find((r) => r.dtype === 'I8');
  if (int8) throw new Error(`${file.description}: tensor ${int8.name} is I8, but ${config} has no "quantization" entry (8-bit weights come from \`sdxl-turbo quantize\`)`);
}

/** A quantized component's weight file: I8 tensors with their F16 scales become 8-bit entries
 *  (read with readQ8), the float ones stay as they are. */
export function openQ8Source(file: SafetensorsFile): TensorSource {
  const where = file.description;
  const entries = new Map<string, TensorEntry>();
  const scales = new Set<string>();
  for (const r of file.raw.values()) {
    if (r.dtype !== 'I8') continue;
    const s = file.raw.get(scaleName(r.name));
    const rows = r.shape[0] ?? 0;
    const k = r.shape.slice(1).reduce((a, d) => a * d, 1);
    const want = [rows, Math.ceil(k / 32)];
    if (r.shape.length < 2 || rows === 0 || k === 0) throw new Error(`${where}: tensor ${r.name} is I8 of shape [${r.shape.join(', ')}]; 8-bit weights are (rows, K, …) with rows, K ≥ 1`);
    if (!s || s.dtype !== 'F16' || s.shape.join() !== want.join()) {
      throw new Error(`${where}: tensor ${r.name} is I8 and needs ${scaleName(r.name)} F16 [${want.join(', ')}], found ${s ? `${s.dtype} [${s.shape.join(', ')}]` : 'none'}`);
    }
    entries.set(r.name, { name: r.name, format: 'f16', shape: r.shape, q8: true });
    scales.add(s.name);
  }
  for (const [name, entry] of file.entries) {
    if (scales.has(name)) continue;
    if (name.endsWith('_scale') && file.raw.get(name.slice(0, -'_scale'.length))?.dtype !== 'I8' && file.raw.has(name.slice(0, -'_scale'.length))) {
      throw new Error(`${where}: tensor ${name} looks like the scales of ${name.slice(0, -'_scale'.length)}, which is not I8`);
    }
    entries.set(name, entry);
  }
  return {
    description: where,
    entries,
    read: (name: string): Promise<HostTensor> => {
      if (entries.get(name)?.q8) return Promise.reject(new Error(`${where}: tensor ${name} is 8-bit; read it with readQ8`));
      return file.read(name);
    },
    readQ8: async (name) => {
      if (!entries.get(name)?.q8) throw new Error(`${where}: tensor ${name} is not 8-bit`);
      const values = (await file.readBytes(name)).bytes;
      const scaleBytes = (await file.readBytes(scaleName(name))).bytes;
      const aligned = scaleBytes.byteOffset % 2 === 0 ? scaleBytes : scaleBytes.slice();
      return {
        values: new Int8Array(values.buffer, values.byteOffset, values.byteLength),
        scales: new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2),
      };
    },
    close: () => file.close(),
  };
}
