import { readdir, readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeSafetensors, SafetensorsFile, type TensorToWrite } from '../../src/io/safetensors.js';
import { filesModelFs, ModelFolder, urlModelFs, type ModelComponent } from '../../src/io/model-folder.js';
import { nodeModelFs } from '../../src/io/node-file.js';
import { TINY } from '../helpers/fixtures.js';
import { startServer, type TestServer } from './http-server.js';

const MODELS: ModelComponent[] = ['text_encoder', 'text_encoder_2', 'unet', 'vae'];
const FILES: Record<ModelComponent, string> = {
  text_encoder: 'text_encoder/model',
  text_encoder_2: 'text_encoder_2/model',
  unet: 'unet/diffusion_pytorch_model',
  vae: 'vae/diffusion_pytorch_model',
};

/** Every file of the tiny-sdxl folder, by its path inside it. */
async function tinyFiles(): Promise<Map<string, Uint8Array<ArrayBuffer>>> {
  const out = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const entry of await readdir(TINY, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = `${entry.parentPath}/${entry.name}`.slice(TINY.length + 1);
    out.set(path, new Uint8Array(await readFile(`${TINY}/${path}`)));
  }
  return out;
}

const blobs = (files: Map<string, Uint8Array<ArrayBuffer>>): Map<string, Blob> => new Map([...files].map(([p, b]) => [p, new Blob([b])]));
const json = (value: unknown): Uint8Array<ArrayBuffer> => new TextEncoder().encode(JSON.stringify(value));
const fail = (files: Map<string, Uint8Array<ArrayBuffer>>, variant?: 'fp16' | 'fp32'): Promise<unknown> =>
  ModelFolder.open(filesModelFs(blobs(files), 'picked'), { variant });

describe('model folder', () => {
  let files: Map<string, Uint8Array<ArrayBuffer>>;
  let index: Record<string, unknown>;
  beforeAll(async () => {
    files = await tinyFiles();
    index = JSON.parse(new TextDecoder().decode(files.get('model_index.json')));
  });

  for (const variant of [undefined, 'fp16', 'fp32'] as const) {
    it(`opens tiny-sdxl from disk, variant ${variant ?? 'default (fp16 when present)'}`, async () => {
      const folder = await ModelFolder.open(nodeModelFs(TINY), { variant });
      const suffix = variant === 'fp32' ? '.safetensors' : '.fp16.safetensors';
      for (const m of MODELS) {
        expect(folder.weightFile(m)).toBe(`${FILES[m]}${suffix}`);
        const source = folder.weights(m);
        expect(source.description).toBe(`${TINY}/${FILES[m]}${suffix}`);
        expect([...source.entries.values()].every((e) => e.format === (variant === 'fp32' ? 'f32' : 'f16'))).toBe(true);
      }
      expect(folder.weights('unet').entries.size).toBe(840);
      expect(folder.weights('unet').entries.get('conv_in.weight')!.shape).toEqual([16, 4, 3, 3]);
      expect([...folder.components.keys()].sort()).toEqual(['scheduler', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'unet', 'vae']);
      expect(folder.components.get('unet')).toEqual({ library: 'diffusers', className: 'UNet2DConditionModel' });
      expect(folder.index.force_zeros_for_empty_prompt).toBe(true);
      expect(folder.config('unet').block_out_channels).toEqual([16, 32, 48]);
      expect(folder.config('text_encoder_2').projection_dim).toBe(20);
      expect(folder.config('scheduler')._class_name).toBe('EulerAncestralDiscreteScheduler');
      expect((await folder.readText('tokenizer_2/special_tokens_map.json')).length).toBeGreaterThan(10);
      await expect(folder.readText('tokenizer/added_tokens.json')).rejects.toThrow(`${TINY}/tokenizer/added_tokens.json: missing (required file)`);
      await folder.close();
    });
  }

  it('reads the same tensors from picked files (Blobs) and over HTTP', async () => {
    const disk = await ModelFolder.open(nodeModelFs(TINY));
    const picked = await ModelFolder.open(filesModelFs(blobs(files), 'picked'));
    const server: TestServer = await startServer(async (path) => files.get(path) ?? null);
    const remote = await ModelFolder.open(urlModelFs(`${server.url}/range`));
    for (const name of ['conv_in.weight', 'up_blocks.2.resnets.2.time_emb_proj.weight']) {
      const expected = (await disk.weights('unet').read(name)).data;
      expect((await picked.weights('unet').read(name)).data).toEqual(expected);
      expect((await remote.weights('unet').read(name)).data).toEqual(expected);
    }
    expect(picked.weights('vae').description).toBe('picked/vae/diffusion_pytorch_model.fp16.safetensors');
    expect(remote.weights('vae').description).toBe(`${server.url}/range/vae/diffusion_pytorch_model.fp16.safetensors`);
    expect(remote.config('vae')).toEqual(disk.config('vae'));
    await Promise.all([disk.close(), picked.close(), remote.close()]);
    await server.close();
  });

  it('falls back to fp32 per component by default; an explicit variant that is missing is an error naming what was tried', async () => {
    const some = new Map(files);
    some.delete('unet/diffusion_pytorch_model.fp16.safetensors');
    const folder = await ModelFolder.open(filesModelFs(blobs(some)));
    expect(folder.weightFile('unet')).toBe('unet/diffusion_pytorch_model.safetensors');
    expect(folder.weightFile('vae')).toBe('vae/diffusion_pytorch_model.fp16.safetensors');
    await expect(fail(some, 'fp16')).rejects.toThrow(
      'picked: no fp16 weights for unet (tried unet/diffusion_pytorch_model.fp16.safetensors, unet/diffusion_pytorch_model.safetensors.index.fp16.json)',
    );
    const none = new Map(some);
    none.delete('unet/diffusion_pytorch_model.safetensors');
    await expect(fail(none)).rejects.toThrow(
      'picked: no fp16 or fp32 weights for unet (tried unet/diffusion_pytorch_model.fp16.safetensors, unet/diffusion_pytorch_model.safetensors.index.fp16.json, unet/diffusion_pytorch_model.safetensors, unet/diffusion_pytorch_model.safetensors.index.json)',
    );
    const noTe = new Map(files);
    noTe.delete('text_encoder/model.safetensors');
    await expect(fail(noTe, 'fp32')).rejects.toThrow('picked: no fp32 weights for text_encoder (tried text_encoder/model.safetensors, text_encoder/model.safetensors.index.json)');
  });

  it('opens sharded weights through their index, variant included', async () => {
    const file = await SafetensorsFile.open((await filesModelFs(blobs(files)).open('unet/diffusion_pytorch_model.fp16.safetensors'))!);
    const parts: TensorToWrite[][] = [[], []];
    const weightMap: Record<string, string> = {};
    const shardName = (i: number) => `diffusion_pytorch_model.fp16-0000${i + 1}-of-00002.safetensors`;
    let i = 0;
    for (const [name, raw] of file.raw) {
      parts[i % 2]!.push({ name, dtype: raw.dtype, shape: raw.shape, data: (await file.readBytes(name)).bytes });
      weightMap[name] = shardName(i++ % 2);
    }
    const sharded = new Map(files);
    sharded.delete('unet/diffusion_pytorch_model.fp16.safetensors');
    sharded.set('unet/diffusion_pytorch_model.safetensors.index.fp16.json', json({ metadata: {}, weight_map: weightMap }));
    parts.forEach((p, k) => sharded.set(`unet/${shardName(k)}`, encodeSafetensors(p)));
    const folder = await ModelFolder.open(filesModelFs(blobs(sharded)));
    expect(folder.weightFile('unet')).toBe('unet/diffusion_pytorch_model.safetensors.index.fp16.json');
    expect(folder.weights('unet').entries.size).toBe(840);
    expect((await folder.weights('unet').read('mid_block.resnets.1.conv2.weight')).data).toEqual((await file.read('mid_block.resnets.1.conv2.weight')).data);

    sharded.delete(`unet/${shardName(1)}`);
    await expect(fail(sharded)).rejects.toThrow(`picked/unet/${shardName(1)}: missing (a shard named by unet/diffusion_pytorch_model.safetensors.index.fp16.json)`);
  });

  it('rejects folders that are not an SDXL pipeline, naming the file and the problem', async () => {
    const withIndex = (change: Record<string, unknown>, drop?: string) => {
      const next = { ...index, ...change };
      if (drop) delete next[drop];
      return new Map(files).set('model_index.json', json(next));
    };
    await expect(fail(withIndex({ _class_name: 'StableDiffusionPipeline' }))).rejects.toThrow(
      'picked/model_index.json: the pipeline is "StableDiffusionPipeline"; only StableDiffusionXLPipeline (SDXL-Turbo\'s) is supported',
    );
    await expect(fail(withIndex({}, 'vae'))).rejects.toThrow('picked/model_index.json: missing component(s) vae');
    await expect(fail(withIndex({ vae: [null, null] }))).rejects.toThrow('picked/model_index.json: missing component(s) vae');
    await expect(fail(withIndex({ unet: ['diffusers', 'UNet2DModel'] }))).rejects.toThrow('picked/model_index.json: unet is UNet2DModel; expected UNet2DConditionModel');
    await expect(fail(withIndex({ tokenizer: ['transformers', 'T5Tokenizer'] }))).rejects.toThrow('tokenizer is T5Tokenizer; expected CLIPTokenizer or CLIPTokenizerFast');
    await expect(fail(withIndex({ unet: ['diffusers'] }))).rejects.toThrow('picked/model_index.json: component unet is ["diffusers"], expected [library, class]');
    // Optional components may be absent ([null, null]) or anything we do not use.
    const extra = await ModelFolder.open(filesModelFs(blobs(withIndex({ image_encoder: ['transformers', 'CLIPVisionModelWithProjection'] }))));
    expect(extra.components.get('image_encoder')?.className).toBe('CLIPVisionModelWithProjection');
    expect(extra.components.has('feature_extractor')).toBe(false);

    const without = (path: string) => {
      const m = new Map(files);
      m.delete(path);
      return m;
    };
    await expect(fail(without('model_index.json'))).rejects.toThrow('picked/model_index.json: missing (not a diffusers pipeline folder)');
    await expect(fail(without('vae/config.json'))).rejects.toThrow("picked/vae/config.json: missing (vae's config)");
    await expect(fail(without('scheduler/scheduler_config.json'))).rejects.toThrow("picked/scheduler/scheduler_config.json: missing (the scheduler's config)");
    await expect(fail(new Map(files).set('unet/config.json', new TextEncoder().encode('{"a": ')))).rejects.toThrow('picked/unet/config.json: invalid JSON');
    await expect(fail(new Map(files).set('model_index.json', json([1])))).rejects.toThrow('picked/model_index.json: not a JSON object');
    const corrupt = new Map(files).set('vae/diffusion_pytorch_model.fp16.safetensors', new Uint8Array(100));
    await expect(fail(corrupt)).rejects.toThrow('picked/vae/diffusion_pytorch_model.fp16.safetensors: invalid safetensors header: not valid UTF-8 JSON');
  });
});
