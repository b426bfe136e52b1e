// The `vae` option (src/io/vae-source.ts): another VAE from a diffusers vae folder or one
// .safetensors file in diffusers, SGM (first_stage_model.…) or original (no prefix) naming, made
// here from the tiny fixture's VAE: each gives the image of the model's own VAE exactly (the same
// weights through the same kernels). A config with force_upcast false runs the VAE in f16 with
// the UNet: planned in f16 (half the weights), and on an adapter with shader-f16, close to f32.

import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { loadPipeline } from '../../src/index.js';
import { openFileReader } from '../../src/io/node-file.js';
import { encodeSafetensors, SafetensorsFile, type TensorToWrite } from '../../src/io/safetensors.js';
import { SgmNameMap, sgmShape } from '../../src/io/sgm-names.js';
import { parseCLIPTextConfig } from '../../src/models/clip.js';
import { parseUNetConfig } from '../../src/models/unet.js';
import { AutoencoderKL, parseVaeConfig } from '../../src/models/vae.js';
import { planMemory } from '../../src/pipeline/dry-run.js';
import { readConfigs, TINY } from '../helpers/fixtures.js';
import { hasF16, relL2 } from '../helpers/gpu.js';

const OUT = new URL('../../test-output/vae-option/', import.meta.url).pathname;
const VAE = `${TINY}/vae`;
const call = { prompt: 'a photo of a cat', seed: 3, width: 64, height: 64 };

/** The tiny VAE's tensors under `rename` (null: dropped), shaped for their new names. */
async function rewrite(path: string, rename: (name: string, shape: readonly number[]) => { name: string; shape: readonly number[] }): Promise<void> {
  const file = await SafetensorsFile.open(await openFileReader(`${VAE}/diffusion_pytorch_model.safetensors`));
  const tensors: TensorToWrite[] = [];
  for (const name of file.raw.keys()) {
    const { entry, bytes } = await file.readBytes(name);
    const renamed = rename(name, entry.shape);
    tensors.push({ name: renamed.name, dtype: entry.dtype, shape: renamed.shape, data: bytes.slice() });
  }
  await file.close();
  writeFileSync(path, encodeSafetensors(tensors));
}

beforeAll(async () => {
  mkdirSync(`${OUT}folder`, { recursive: true });
  copyFileSync(`${VAE}/config.json`, `${OUT}folder/config.json`);
  copyFileSync(`${VAE}/diffusion_pytorch_model.safetensors`, `${OUT}folder/diffusion_pytorch_model.safetensors`);
  copyFileSync(`${VAE}/diffusion_pytorch_model.safetensors`, `${OUT}diffusers.safetensors`);
  const c = readConfigs(TINY);
  const names = new SgmNameMap({ unet: parseUNetConfig(c.unet), vae: parseVaeConfig(c.vae), text_encoder: parseCLIPTextConfig(c.textEncoder), text_encoder_2: parseCLIPTextConfig(c.textEncoder2) });
  const sgm = (name: string, shape: readonly number[]): { name: string; shape: readonly number[] } => {
    const key = names.sgmKey('vae', name)!;
    return { name: key, shape: sgmShape(shape, names.targets(key)![0]!.transform) };
  };
  await rewrite(`${OUT}sgm.safetensors`, sgm);
  await rewrite(`${OUT}original.safetensors`, (name, shape) => {
    const s = sgm(name, shape);
    return { ...s, name: s.name.replace(/^first_stage_model\./, '') };
  });
  await rewrite(`${OUT}unknown.safetensors`, (name, shape) => ({ name: `model.${name}`, shape }));
  await rewrite(`${OUT}misnamed.safetensors`, (name, shape) => ({ name: name.replace('decoder.', 'dekoder.'), shape }));
  mkdirSync(`${OUT}fp16-fix`, { recursive: true });
  writeFileSync(`${OUT}fp16-fix/config.json`, JSON.stringify({ ...JSON.parse(readFileSync(`${VAE}/config.json`, 'utf8')), force_upcast: false }));
  copyFileSync(`${VAE}/diffusion_pytorch_model.fp16.safetensors`, `${OUT}fp16-fix/diffusion_pytorch_model.fp16.safetensors`);
});

async function image(options: { vae?: string; dtype?: 'f16' | 'f32'; variant?: 'fp16' | 'fp32' } = {}): Promise<{ data: Uint8Array; describe: string[] }> {
  const pipeline = await loadPipeline(TINY, { variant: 'fp32', dtype: 'f32', ...options });
  try {
    const result = await pipeline.generate(call);
    return { data: result.images[0]!.data, describe: pipeline.describe() };
  } finally {
    await pipeline.dispose();
  }
}

describe('vae option on the tiny fixture', () => {
  it('a folder, a diffusers file, an SGM file and an original-naming file each give the model VAE\'s image exactly', async () => {
    const own = await image();
    for (const vae of ['folder', 'diffusers.safetensors', 'sgm.safetensors', 'original.safetensors']) {
      const other = await image({ vae: `${OUT}${vae}` });
      expect(other.describe, vae).toContain(`weights: ${OUT}${vae}${vae === 'folder' ? '/diffusion_pytorch_model.safetensors' : ''}`);
      expect(Buffer.from(other.data).equals(Buffer.from(own.data)), vae).toBe(true);
    }
  }, 120_000);

  it('refuses a file that is not an SDXL VAE and a folder without config.json, naming them', async () => {
    const unknown = await loadPipeline(TINY, { vae: `${OUT}unknown.safetensors` }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(UsageError);
    expect((unknown as Error).message).toMatch(/^vae .*unknown\.safetensors: not an SDXL VAE in diffusers or SGM naming: \d+ unknown key\(s\) \(model\./);
    // Mostly diffusers names: checked as the model's own VAE weights are.
    const misnamed = await loadPipeline(TINY, { vae: `${OUT}misnamed.safetensors` }).catch((e: unknown) => e);
    expect(misnamed).toBeInstanceOf(UsageError);
    expect((misnamed as Error).message).toMatch(/^vae weights in .*misnamed\.safetensors do not match the model: \d+ missing \(decoder\..*\d+ unexpected \(dekoder\./);
    const folder = await loadPipeline(TINY, { vae: TINY }).catch((e: unknown) => e);
    expect(folder).toBeInstanceOf(UsageError);
    expect((folder as Error).message).toMatch(/^vae .*tiny-sdxl: no config\.json/);
  });

  it('plans a force_upcast: false VAE in f16 beside an f16 UNet, and SDXL\'s in f32', async () => {
    const configs = readConfigs(TINY);
    const fixed = { ...configs, vae: { ...(configs.vae as object), force_upcast: false } };
    const decode = async (c: typeof configs) => (await planMemory(c, { width: 64, height: 64, batch: 1, dtype: 'f16' })).find((r) => r.network === 'vae decode')!;
    const [upcast, f16] = [await decode(configs), await decode(fixed)];
    expect(upcast.note).toMatch(/^f32, /);
    expect(f16.note).toMatch(/^f16, /);
    // Half the bytes, but for each weight's buffer rounded up to 16 bytes.
    const tensors = AutoencoderKL.create(parseVaeConfig(configs.vae)).registry.weights.size;
    expect(Math.abs(f16.weightBytes! - upcast.weightBytes! / 2)).toBeLessThan(16 * tensors);
  });

  it('runs a force_upcast: false VAE in f16 on an adapter with shader-f16, close to the f32 VAE', async (ctx) => {
    if (!(await hasF16())) return ctx.skip('the adapter has no shader-f16');
    const f32 = await image({ dtype: 'f16', variant: 'fp16' });
    const f16 = await image({ dtype: 'f16', variant: 'fp16', vae: `${OUT}fp16-fix` });
    expect(f16.describe).toContain('compute: f16 (text encoders, UNet), f16 (VAE)');
    // f16 activations through the decoder: the e2e test's f16 image bound, 5e-3 (relative L2).
    const error = relL2(Float32Array.from(f16.data), Float32Array.from(f32.data));
    console.log(`f16 VAE vs f32 VAE, 8-bit image: relative L2 ${error.toExponential(2)}`);
    expect(error).toBeLessThan(5e-3);
  });
});
