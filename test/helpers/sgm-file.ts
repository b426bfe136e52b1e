// tiny_sdxl.safetensors (the fp32 single-file checkpoint of tiny-extensions/single-file), rebuilt
// from the tiny folder's fp32 weights by the fixture's own name map (tiny-name-map.json: what
// diffusers' convert_diffusers_to_original_sdxl.py wrote, found by value) instead of vendoring its
// 20 MB: the repository must stay small enough to travel to a GPU machine. The rebuilt file holds
// the same bytes as the one diffusers wrote: its sha256 is checked every time; the fp16 file
// is vendored as diffusers wrote it.

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
  unet: 'unet/diffusion_pytorch_model.safetensors',
  vae: 'vae/diffusion_pytorch_model.safetensors',
  text_encoder: 'text_encoder/model.safetensors',
  text_encoder_2: 'text_encoder_2/model.safetensors',
};

const OUT = new URL('../../test-output/tiny_sdxl.safetensors', import.meta.url).pathname;
/** sha256 of shared/fixtures/tiny-sdxl-extensions/single-file/tiny_sdxl.safetensors. */
const SHA256 = '1bd7d04fc5ad4b4b5c0b733c8708f0b94a608c04ed8d3bced6ee22cc6bf00c85';

/** The path of the rebuilt fp32 single file (made on first use, then reused), byte for byte
 *  the file diffusers wrote. */
export async function tinySgmFile(): Promise<string> {
  if (!existsSync(OUT)) await build();
  const sha = createHash('sha256').update(readFileSync(OUT)).digest('hex');
  if (sha !== SHA256) throw new Error(`${OUT}: sha256 ${sha}, not diffusers' tiny_sdxl.safetensors (${SHA256}): delete it to rebuild`);
  return OUT;
}

async function build(): Promise<void> {
  const map = JSON.parse(readFileSync(`${FIXTURES}tiny-sdxl-extensions/single-file/tiny-name-map.json`, 'utf8')) as { keys: MapEntry[] };
  const sources = new Map<string, SafetensorsFile>();
  const source = async (component: string): Promise<SafetensorsFile> => {
    let file = sources.get(component);
    if (!file) sources.set(component, (file = await SafetensorsFile.open(await openFileReader(`${TINY}/${FILES[component]}`))));
    return file;
  };
  const tensors: TensorToWrite[] = [];
  for (const k of map.keys) {
    const file = await source(k.component);
    const names = typeof k.diffusers === 'string' ? [k.diffusers] : k.diffusers;
    const parts = await Promise.all(names.map(async (n) => new Float32Array((await file.readBytes(n)).bytes.slice().buffer)));
    let data: Float32Array;
    if (k.transform === 'transpose') {
      // diffusers' (out, in) Linear weight stored as (in, out).
      const [rows, cols] = k.shape as [number, number];
      data = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[r * cols + c] = parts[0]![c * rows + r]!;
    } else if (k.transform === 'none' || k.transform.startsWith('reshape') || k.transform.startsWith('concat')) {
      // Same values: renamed, viewed as a 1×1 conv, or q, k, v stacked along dim 0.
      data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) data.set(p, (at += p.length) - p.length);
    } else {
      throw new Error(`tiny-name-map.json: unknown transform ${k.transform} of ${k.sgm}`);
    }
    tensors.push({ name: k.sgm, dtype: 'F32', shape: k.shape, data });
  }
  await Promise.all([...sources.values()].map((f) => f.close()));
  // As the reference writer lays them out: by name, with torch's format tag.
  tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  await mkdir(new URL('.', `file://${OUT}`).pathname, { recursive: true });
  // Written aside and renamed: a concurrent test file never reads half a file.
  const partial = `${OUT}.${process.pid}.partial`;
  await writeFile(partial, encodeSafetensors(tensors, { format: 'pt' }));
  await rename(partial, OUT);
}
