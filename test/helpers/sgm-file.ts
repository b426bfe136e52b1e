// tiny_sdxl.safetensors and tiny_sdxl_fp16.safetensors (the single-file checkpoints of
// tiny-sdxl-extensions/single-file), rebuilt from the tiny folder's fp32 / fp16 weights by the
// fixture's own name map (tiny-name-map.json: what diffusers' convert_diffusers_to_original_sdxl.py
// wrote, found by value) instead of vendoring their 30 MB: the repository must stay small enough to
// travel to a GPU machine. A rebuilt file is byte for byte the one diffusers wrote: its sha256 is
// checked every time it is used.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { openFileReader } from '../../src/io/node-file.js';
import { encodeSafetensors, SafetensorsFile, type TensorToWrite } from '../../src/io/safetensors.js';
import { FIXTURES, TINY } from './fixtures.js';

/** One key of the fixture's name maps (tiny-name-map.json, sdxl-turbo-sgm-manifest.json). */
export interface MapEntry {
  readonly sgm: string;
  readonly shape: readonly number[];
  readonly component: string;
  readonly diffusers: string | readonly string[];
  readonly transform: string;
}

const FILES: Readonly<Record<string, string>> = {
  unet: 'unet/diffusion_pytorch_model',
  vae: 'vae/diffusion_pytorch_model',
  text_encoder: 'text_encoder/model',
  text_encoder_2: 'text_encoder_2/model',
};

/** Per variant: the file name, its dtype, and the sha256 of the file in shared/fixtures. */
const VARIANTS = {
  fp32: { file: 'tiny_sdxl.safetensors', suffix: '', dtype: 'F32', sha256: '1bd7d04fc5ad4b4b5c0b733c8708f0b94a608c04ed8d3bced6ee22cc6bf00c85' },
  fp16: { file: 'tiny_sdxl_fp16.safetensors', suffix: '.fp16', dtype: 'F16', sha256: 'cdb7ebdd075e02ef3f3aabc21cf1bac12ac471b52a75df0ca5d72539d192eda2' },
} as const;

/** The path of the rebuilt single file of `variant` (made on first use, then reused), byte for
 *  byte the file diffusers wrote. */
export async function tinySgmFile(variant: keyof typeof VARIANTS = 'fp32'): Promise<string> {
  const v = VARIANTS[variant];
  const out = new URL(`../../test-output/${v.file}`, import.meta.url).pathname;
  if (!existsSync(out)) await build(out, v.suffix, v.dtype);
  const sha = createHash('sha256').update(readFileSync(out)).digest('hex');
  if (sha !== v.sha256) throw new Error(`${out}: sha256 ${sha}, not diffusers' ${v.file} (${v.sha256}): delete it to rebuild`);
  return out;
}

async function build(out: string, suffix: string, dtype: 'F32' | 'F16'): Promise<void> {
  const map = JSON.parse(readFileSync(`${FIXTURES}tiny-sdxl-extensions/single-file/tiny-name-map.json`, 'utf8')) as { keys: MapEntry[] };
  const sources = new Map<string, SafetensorsFile>();
  const source = async (component: string): Promise<SafetensorsFile> => {
    let file = sources.get(component);
    if (!file) sources.set(component, (file = await SafetensorsFile.open(await openFileReader(`${TINY}/${FILES[component]}${suffix}.safetensors`))));
    return file;
  };
  const tensors: TensorToWrite[] = [];
  for (const k of map.keys) {
    const file = await source(k.component);
    const names = typeof k.diffusers === 'string' ? [k.diffusers] : k.diffusers;
    // Elements as raw bits (f32 or f16): the transforms only move them.
    const parts = await Promise.all(names.map(async (n) => {
      const raw = (await file.readBytes(n)).bytes.slice().buffer;
      return dtype === 'F32' ? new Uint32Array(raw) : new Uint16Array(raw);
    }));
    const total = parts.reduce((n, p) => n + p.length, 0);
    const data = dtype === 'F32' ? new Uint32Array(total) : new Uint16Array(total);
    if (k.transform === 'transpose') {
      // diffusers' (out, in) Linear weight stored as (in, out).
      const [rows, cols] = k.shape as [number, number];
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[r * cols + c] = parts[0]![c * rows + r]!;
    } else if (k.transform === 'none' || k.transform.startsWith('reshape') || k.transform.startsWith('concat')) {
      // Same values: renamed, viewed as a 1×1 conv, or q, k, v stacked along dim 0.
      let at = 0;
      for (const p of parts) data.set(p, (at += p.length) - p.length);
    } else {
      throw new Error(`tiny-name-map.json: unknown transform ${k.transform} of ${k.sgm}`);
    }
    tensors.push({ name: k.sgm, dtype, shape: k.shape, data });
  }
  await Promise.all([...sources.values()].map((f) => f.close()));
  // As the reference writer lays them out: by name, with torch's format tag.
  tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  await mkdir(new URL('.', `file://${out}`).pathname, { recursive: true });
  // Written aside and renamed: a concurrent test file never reads half a file.
  const partial = `${out}.${process.pid}.partial`;
  await writeFile(partial, encodeSafetensors(tensors, { format: 'pt' }));
  await rename(partial, out);
}
