// Reads the vendored reference data (test/fixtures, see its README for provenance).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openFileReader } from '../../src/io/node-file.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import type { PipelineConfigs } from '../../src/pipeline/dry-run.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
export const TINY = `${FIXTURES}tiny-sdxl`;
export const TINY_REF = `${FIXTURES}tiny-sdxl-reference`;

export interface RefTensor {
  readonly shape: readonly number[];
  /** Float tensors as float32; integer tensors (ids, uint8 images) as numbers. */
  readonly data: Float32Array;
}

/** Every tensor of a reference safetensors file, as float32 values. */
export async function readReference(path: string): Promise<Map<string, RefTensor>> {
  const file = await SafetensorsFile.open(await openFileReader(path));
  const out = new Map<string, RefTensor>();
  for (const name of file.raw.keys()) {
    const { entry, bytes } = await file.readBytes(name);
    const buf = bytes.slice().buffer;
    let data: Float32Array;
    if (entry.dtype === 'F32') data = new Float32Array(buf);
    else if (entry.dtype === 'I64') data = Float32Array.from(new BigInt64Array(buf), (v) => Number(v));
    else if (entry.dtype === 'I32') data = Float32Array.from(new Int32Array(buf));
    else if (entry.dtype === 'U8') data = Float32Array.from(new Uint8Array(buf));
    else throw new Error(`${path}: reference tensor ${name} has unexpected dtype ${entry.dtype}`);
    out.set(name, { shape: entry.shape, data });
  }
  await file.close();
  return out;
}

/** One tensor of a reference map, or a clear failure naming it. */
export function ref(map: Map<string, RefTensor>, name: string): RefTensor {
  const t = map.get(name);
  if (!t) throw new Error(`reference tensor ${name} not found (have: ${[...map.keys()].slice(0, 8).join(', ')}, …)`);
  return t;
}

/** The five configs of a diffusers folder (e.g. TINY or sdxl-turbo-layout), as the dry run takes them. */
export function readConfigs(root: string): PipelineConfigs {
  const json = (path: string): unknown => JSON.parse(readFileSync(`${root}/${path}`, 'utf8'));
  return {
    textEncoder: json('text_encoder/config.json'),
    textEncoder2: json('text_encoder_2/config.json'),
    unet: json('unet/config.json'),
    vae: json('vae/config.json'),
    scheduler: json('scheduler/scheduler_config.json'),
  };
}
