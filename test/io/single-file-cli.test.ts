// `--model FILE.safetensors --config DIR` through the built CLI as a real process: both tiny
// single files give what the folder gives (f32: the saved tensors equal, bit for bit; f16: the
// reference within the folder's f16 bounds), and the single-file errors are one line, exit 2.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReference, ref, TINY, TINY_REF } from '../helpers/fixtures.js';
import { hasF16, relL2 } from '../helpers/gpu.js';
import { tinySgmFile } from '../helpers/sgm-file.js';
import { buildCli, expectUsageError, removeCli, runMain, runProcess } from '../cli/run.js';

const CASE = 't2i_2step_64x96';
const RUN = ['-p', 'a red bicycle leaning on a brick wall', '-s', '2', '--seed', '2024', '-W', '96', '-H', '64'];
const SPAWN_TIMEOUT = 120_000;

let tmp: string;
let cli: string;

beforeAll(async () => {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-single-cli-'));
  cli = await buildCli();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
  await removeCli(cli);
});

async function generate(name: string, model: string[]): Promise<Map<string, { shape: readonly number[]; data: Float32Array }>> {
  const tensors = join(tmp, `${name}.safetensors`);
  const run = await runProcess(cli, ['generate', ...model, ...RUN, '--save-tensors', tensors, '-o', join(tmp, `${name}.png`)], SPAWN_TIMEOUT);
  expect(run.err, run.out.join('\n')).toEqual([]);
  expect(run.code).toBe(0);
  return readReference(tensors);
}

describe('sdxl-turbo generate --model FILE.safetensors --config DIR', () => {
  it('f32: tiny_sdxl.safetensors gives the folder\'s tensors bit for bit', async () => {
    const folder = await generate('folder-f32', ['-m', TINY, '--variant', 'fp32', '--dtype', 'f32']);
    const single = await generate('single-f32', ['-m', await tinySgmFile(), '--config', TINY, '--dtype', 'f32']);
    for (const name of ['prompt_embeds', 'pooled_prompt_embeds', 'final_latents', 'image']) {
      // The same weights through the same kernels: equal, not close.
      expect(single.get(name)!.data, name).toEqual(folder.get(name)!.data);
    }
    expect(await readFile(join(tmp, 'single-f32.png'))).not.toEqual(Buffer.alloc(0));
  });

  it('f16: tiny_sdxl_fp16.safetensors gives the folder\'s fp16 result, the reference within the f16 bounds', async (ctx) => {
    if (!(await hasF16())) return ctx.skip('the adapter has no shader-f16');
    const folder = await generate('folder-f16', ['-m', TINY, '--variant', 'fp16', '--dtype', 'f16']);
    const single = await generate('single-f16', ['-m', await tinySgmFile('fp16'), '--config', TINY, '--dtype', 'f16']);
    const reference = await readReference(`${TINY_REF}/e2e_${CASE}.safetensors`);
    for (const name of ['final_latents', 'image']) {
      // The fp16 file holds the folder's fp16 tensors bit for bit (single-file.test.ts): equal.
      expect(single.get(name)!.data, name).toEqual(folder.get(name)!.data);
      const err = relL2(single.get(name)!.data, ref(reference, `${CASE}.${name}`).data);
      console.log(`${CASE} from tiny_sdxl_fp16.safetensors via the CLI, f16: ${name} ${err.toExponential(2)}`);
      // test/pipeline/e2e.test.ts's f16 bound (fp16 weights and activations).
      expect(err, name).toBeLessThan(5e-3);
    }
  });
});

describe('single-file errors on the command line', () => {
  it('an unknown key: one line naming the file and the key, exit 2', async () => {
    // The tiny file with one key renamed (the header is rewritten with the same length).
    const bytes = new Uint8Array(await readFile(await tinySgmFile()));
    const text = new TextDecoder().decode(bytes.subarray(0, 200_000));
    const at = text.indexOf('"model.diffusion_model.out.2.bias"');
    bytes.set(new TextEncoder().encode('"model.diffusion_model.out.9.bias"'), at);
    const path = join(tmp, 'renamed.safetensors');
    await writeFile(path, bytes);
    const run = await runMain(['generate', '-m', path, '--config', TINY, '-p', 'x']);
    expectUsageError(run, `${path} (with the configs of ${TINY}): not the SDXL single-file checkpoint the configs describe: 1 unknown (model.diffusion_model.out.9.bias); 1 missing (model.diffusion_model.out.2.bias)`);
  });

  it('--config with a diffusers folder, and a --config that is not a folder', async () => {
    expectUsageError(await runMain(['generate', '-m', TINY, '--config', TINY, '-p', 'x']), `--config: only for a single-file checkpoint; ${TINY} is a diffusers folder`);
    expectUsageError(await runMain(['generate', '-m', await tinySgmFile(), '--config', join(TINY, 'model_index.json'), '-p', 'x']), '--config', 'not a folder');
  });

  it('tokenize with a single file takes the built-in CLIP tokenizers (not reading the file)', async () => {
    const run = await runMain(['tokenize', '-m', join(tmp, 'absent.safetensors'), '-p', 'a photo of a cat']);
    const folder = await runMain(['tokenize', '-m', TINY, '-p', 'a photo of a cat']);
    expect(run.code).toBe(0);
    expect(run.out).toEqual(folder.out);
  });
});
