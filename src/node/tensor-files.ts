// Node-only: the CLI's parity files (--inputs, --save-tensors) as float32 tensors by name.

import { writeFile } from 'node:fs/promises';
import { f16ArrayToF32 } from '../f16.js';
import { openFileReader } from '../io/node-file.js';
import { encodeSafetensors, SafetensorsFile } from '../io/safetensors.js';
import { usage } from '../errors.js';

/** Every float tensor of a safetensors file as float32; a leading "<case>." prefix is kept. */
export async function readSafetensorsTensors(path: string): Promise<Map<string, Float32Array>> {
  let file: SafetensorsFile;
  try {
    file = await SafetensorsFile.open(await openFileReader(path));
  } catch (e) {
    usage(`--inputs: ${(e as Error).message}`);
  }
  const out = new Map<string, Float32Array>();
  try {
    for (const name of file.entries.keys()) {
      const t = await file.read(name);
      out.set(name, t.format === 'f32' ? (t.data as Float32Array) : t.format === 'f16' ? f16ArrayToF32(t.data as Uint16Array) : bf16ToF32(t.data as Uint16Array));
    }
  } finally {
    await file.close();
  }
  return out;
}

function bf16ToF32(bits: Uint16Array): Float32Array {
  return new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
}

export async function writeSafetensors(path: string, tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>): Promise<void> {
  const list = [...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data }));
  await writeFile(path, encodeSafetensors(list));
}
