// Weights that are not finite (issue 13, item 6) are refused at load, naming the tensor: checked
// on the GPU where they land (src/ops/finite.ts), one readback per network. A generation whose
// image comes out NaN or ±Inf from finite weights fails with a NonFiniteError and writes nothing.
// The fixture is a copy of tiny-sdxl in test-output/ with single values overwritten in place.

import { cp, mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NonFiniteError, UsageError } from '../../src/errors.js';
import { loadPipeline } from '../../src/index.js';
import { expectUsageError, runMain } from '../cli/run.js';
import { TINY } from '../helpers/fixtures.js';
import { testGpu } from '../helpers/gpu.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const ROOT = join(TINY, '../../../test-output/non-finite');
const MODEL = join(ROOT, 'model');
const RUN = { prompt: 'a photo of a cat', steps: 1, seed: 3, width: 64, height: 64 };

/** Overwrites elements `at` of tensor `name` in a safetensors file with `values`; returns a
 *  function that puts the original bytes back. */
async function poke(file: string, name: string, at: readonly number[], values: readonly number[]): Promise<() => Promise<void>> {
  const bytes = await readFile(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const entry = header[name];
  if (!entry) throw new Error(`${file}: no tensor ${name}`);
  const width = entry.dtype === 'F32' ? 4 : 2;
  const handle = await open(file, 'r+');
  const originals: Array<[number, Buffer]> = [];
  try {
    for (const [k, i] of at.entries()) {
      const position = 8 + headerLength + entry.data_offsets[0] + i * width;
      const value = Buffer.alloc(width);
      if (width === 4) value.writeFloatLE(values[k]!);
      else value.writeUInt16LE(Number.isNaN(values[k]) ? 0x7e00 : values[k]! > 0 ? 0x7c00 : 0xfc00); // f16 NaN, ±Inf
      originals.push([position, bytes.subarray(position, position + width)]);
      await handle.write(value, 0, width, position);
    }
  } finally {
    await handle.close();
  }
  return async () => {
    const h = await open(file, 'r+');
    for (const [position, original] of originals) await h.write(original, 0, original.length, position);
    await h.close();
  };
}

describe('non-finite weights and outputs', () => {
  beforeAll(async () => {
    await rm(ROOT, { recursive: true, force: true });
    await mkdir(ROOT, { recursive: true });
    await cp(TINY, MODEL, { recursive: true });
  });
  afterAll(() => rm(ROOT, { recursive: true, force: true }));

  const unet32 = (): string => join(MODEL, 'unet/diffusion_pytorch_model.safetensors');

  it('fp32 weights, f32 compute: NaN and ±Inf are refused at load, naming each tensor and its count', async () => {
    const restore = await poke(unet32(), 'conv_in.weight', [0, 17], [NaN, Infinity]);
    const restore2 = await poke(unet32(), 'mid_block.resnets.0.norm1.bias', [3], [-Infinity]);
    try {
      const error = await loadPipeline(MODEL, { variant: 'fp32', dtype: 'f32', preflight: RUN }).then(() => null, (e: unknown) => e);
      expect(error).toBeInstanceOf(UsageError);
      const message = (error as Error).message;
      expect(message).toMatch(/^unet weights in .*unet\/diffusion_pytorch_model\.safetensors are not finite: /);
      expect(message).toContain('conv_in.weight (16, 4, 3, 3) has 2 NaN or ±Inf values');
      expect(message).toContain('mid_block.resnets.0.norm1.bias (48) has 1 NaN or ±Inf value');
      expect(message).not.toContain('\n');
    } finally {
      await restore2();
      await restore();
    }
  });

  it('fp16 weights: a ±Inf in the VAE (f16 file, f32 compute) and a NaN in a text encoder are named', async () => {
    const vae16 = join(MODEL, 'vae/diffusion_pytorch_model.fp16.safetensors');
    const te16 = join(MODEL, 'text_encoder_2/model.fp16.safetensors');
    for (const [file, name, value, component] of [[vae16, 'decoder.conv_out.weight', -Infinity, 'vae'], [te16, 'text_model.final_layer_norm.weight', NaN, 'text_encoder_2']] as const) {
      const restore = await poke(file, name, [5], [value]);
      try {
        await expect(loadPipeline(MODEL, { variant: 'fp16', preflight: RUN })).rejects.toThrow(new RegExp(`^${component} weights in .* are not finite: ${name.replaceAll('.', '\\.')} \\(.*\\) has 1 NaN or ±Inf value`));
      } finally {
        await restore();
      }
    }
  });

  it('fp32 weights, f16 compute: a value past f16\'s range is refused once converted', async (ctx) => {
    const gpu = await testGpu();
    if (!gpu.f16) return ctx.skip(`f16 compute needs shader-f16, which ${gpu.adapterName} lacks`);
    const te32 = join(MODEL, 'text_encoder/model.safetensors');
    const restore = await poke(te32, 'text_model.final_layer_norm.weight', [2], [1e6]);
    try {
      await expect(loadPipeline(MODEL, { variant: 'fp32', dtype: 'f16', preflight: RUN })).rejects.toThrow(/^text_encoder weights in .* are not finite: text_model\.final_layer_norm\.weight \(\d+\) has 1 NaN or ±Inf value once converted to f16 \(finite up to ±65504\)$/);
    } finally {
      await restore();
    }
  });

  it('the CLI: exit 2, one line naming the tensor, no image written', async () => {
    const restore = await poke(unet32(), 'conv_out.bias', [1], [NaN]);
    const out = join(ROOT, 'nan.png');
    try {
      const run = await runMain(['generate', '--model', MODEL, '--variant', 'fp32', '--dtype', 'f32', '--prompt', 'x', '--width', '64', '--height', '64', '--out', out]);
      expect(run.code).toBe(2);
      expectUsageError(run, /unet weights in .* are not finite: conv_out\.bias \(4\) has 1 NaN or ±Inf value/);
      await expect(stat(out)).rejects.toThrow(/ENOENT/);
    } finally {
      await restore();
    }
  });

  it('finite weights whose image overflows: NonFiniteError, and the CLI exits 1 without writing a PNG', async () => {
    // 1e30 everywhere in the VAE decoder's first convolution: finite in f32, but its group
    // norm's variance overflows, so the decoded image is NaN.
    const vae32 = join(MODEL, 'vae/diffusion_pytorch_model.safetensors');
    const header = JSON.parse((await readFile(vae32)).subarray(8, 8 + Number((await readFile(vae32)).readBigUInt64LE(0))).toString('utf8')) as Record<string, { shape: number[] }>;
    const count = header['decoder.conv_in.weight']!.shape.reduce((a, b) => a * b, 1);
    const restore = await poke(vae32, 'decoder.conv_in.weight', Array.from({ length: count }, (_, i) => i), Array<number>(count).fill(1e30));
    const out = join(ROOT, 'overflow.png');
    try {
      const pipeline = await loadPipeline(MODEL, { variant: 'fp32', dtype: 'f32', preflight: RUN });
      try {
        const error = await pipeline.generate(RUN).then(() => null, (e: unknown) => e);
        expect(error).toBeInstanceOf(NonFiniteError);
        expect((error as Error).message).toMatch(/^the generation overflowed: \d+ of 12288 values of the decoded image are NaN or ±Inf, from finite weights; no image was made$/);
      } finally {
        await pipeline.dispose();
      }
      const run = await runMain(['generate', '--model', MODEL, '--variant', 'fp32', '--dtype', 'f32', '--prompt', 'x', '--width', '64', '--height', '64', '--out', out]);
      expect(run.code).toBe(1);
      expect(run.err.join('\n')).toMatch(/the generation overflowed/);
      await expect(stat(out)).rejects.toThrow(/ENOENT/);
    } finally {
      await restore();
    }
  });
});
