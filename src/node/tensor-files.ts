// Node-only: the CLI's parity files. --inputs reads the random tensors a run would draw,
// --save-tensors writes what it computed, both as safetensors.

import { usage } from '../errors.js';
import { f16ArrayToF32 } from '../f16.js';
import { openFileReader } from '../io/node-file.js';
import { encodeSafetensors, SafetensorsFile } from '../io/safetensors.js';
import type { HostTensor } from '../io/tensor-source.js';
import { writeFilesAtomic } from './atomic-write.js';

/** A random tensor's name, optionally after one "<case>." prefix (the fixture's e2e files,
 *  whose case names may hold dots themselves: "i2i_s0.5_2step_64x64.step0.noise"). */
const RANDOM_INPUT = /^(?:(.+)\.)?(initial_latents|step\d+\.noise|posterior_noise|add_noise_noise)$/;

/**
 * The random tensors of an --inputs file as float32, by the names the pipeline draws them under
 * (initial_latents, step{i}.noise, posterior_noise, add_noise_noise). A leading "<case>." is
 * stripped, so the fixture's e2e files work as they are; their other tensors are ignored.
 */
export async function readRandomInputs(path: string): Promise<Map<string, Float32Array>> {
  const fail = (e: Error): never => usage(`--inputs: ${e.message}`);
  const reader = await openFileReader(path).catch(fail);
  const file = await SafetensorsFile.open(reader).catch(async (e: Error) => {
    await reader.close?.();
    return fail(e);
  });
  try {
    const found = new Map<string, string>(); // name → key in the file
    const prefixes = new Set<string>();
    for (const key of file.raw.keys()) {
      const match = RANDOM_INPUT.exec(key);
      if (!match) continue;
      prefixes.add(match[1] ?? '');
      found.set(match[2]!, key);
    }
    if (prefixes.size > 1) {
      usage(`--inputs ${path}: holds the tensors of several runs (${[...prefixes].map((p) => (p === '' ? 'unprefixed' : `"${p}."`)).join(', ')}); keep one`);
    }
    if (found.size === 0) {
      usage(`--inputs ${path}: no random tensors (initial_latents, step{i}.noise, posterior_noise or add_noise_noise, optionally after "<case>.")`);
    }
    const out = new Map<string, Float32Array>();
    for (const [name, key] of found) {
      const format = file.entries.get(key)?.format;
      if (!format) usage(`--inputs ${path}: ${key} is ${file.raw.get(key)!.dtype}, expected F32, F16 or BF16`);
      const tensor = await file.read(key).catch(fail);
      out.set(name, toF32(tensor));
    }
    return out;
  } finally {
    await file.close();
  }
}

function toF32(t: HostTensor): Float32Array {
  if (t.format === 'f32') return t.data as Float32Array;
  const bits = t.data as Uint16Array;
  // bf16 is the top half of an f32.
  return t.format === 'f16' ? f16ArrayToF32(bits) : new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
}

/** Writes float32 tensors (--save-tensors: final_latents, image, prompt_embeds, pooled_prompt_embeds). */
export async function writeTensors(path: string, tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>): Promise<void> {
  await writeFilesAtomic([{ path, data: encodeTensors(tensors) }], { describe: (p) => `--save-tensors ${p}` });
}

/** The safetensors bytes of float32 tensors (written with the run's other outputs). */
export function encodeTensors(tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>): Uint8Array {
  return encodeSafetensors([...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })));
}
