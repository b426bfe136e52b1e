// ModelFolder.open's `weights` option: sources given per component replace the folder's files.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ModelFolder, type ModelComponent } from '../../src/io/model-folder.js';
import { nodeModelFs } from '../../src/io/node-file.js';
import { SyntheticSource } from '../../src/io/synthetic.js';
import { FIXTURES, TINY } from '../helpers/fixtures.js';

const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;
const MODELS: ModelComponent[] = ['text_encoder', 'text_encoder_2', 'unet', 'vae'];
const manifest: unknown = JSON.parse(readFileSync(`${LAYOUT}/weights-manifest.json`, 'utf8'));

describe('model folder with given weight sources', () => {
  it('opens a folder without weight files when every component has a source', async () => {
    await expect(ModelFolder.open(nodeModelFs(LAYOUT))).rejects.toThrow(`${LAYOUT}: no fp16 or fp32 weights for text_encoder`);
    const sources = Object.fromEntries(MODELS.map((m) => [m, SyntheticSource.fromManifest(manifest, m)]));
    const folder = await ModelFolder.open(nodeModelFs(LAYOUT), { weights: sources });
    for (const m of MODELS) {
      expect(folder.weights(m)).toBe(sources[m]);
      expect(folder.weightFile(m)).toBe(`synthetic ${m} weights (real-size-synthetic/SPEC.md)`);
    }
    expect(folder.weights('unet').entries.get('conv_in.weight')!.shape).toEqual([320, 4, 3, 3]);
    expect(folder.config('unet').block_out_channels).toEqual([320, 640, 1280]);
    await folder.close();
  });

  it('reads the other components from the folder', async () => {
    const unet = SyntheticSource.fromManifest(manifest, 'unet');
    const folder = await ModelFolder.open(nodeModelFs(TINY), { variant: 'fp32', weights: { unet } });
    expect(folder.weights('unet')).toBe(unet);
    expect(folder.weightFile('vae')).toBe('vae/diffusion_pytorch_model.safetensors');
    expect(folder.weights('text_encoder').entries.get('text_model.embeddings.token_embedding.weight')!.format).toBe('f32');
    await folder.close();
  });
});
