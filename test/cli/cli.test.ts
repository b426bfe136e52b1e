// The sdxl-turbo command line end to end on the tiny fixture: tokenize against the recorded ids,
// text-to-image and image-to-image against diffusers' recorded runs (through --inputs,
// --save-tensors and the PNG), the printed seed, batches, and every bad input: one line naming
// it, exit 2, before any weight is uploaded. Every run that opens the GPU runs the built CLI as
// a real process, with a timeout, which also proves the exit code and that Node exits; the
// other errors call main() in this process. (Dawn now and then crashes at exit in a process
// that opened several devices, so this one opens none.)

import { mkdir, mkdtemp, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng, readPngText } from '../../src/io/png-encode.js';
import { decodePng } from '../../src/io/png.js';
import { encodeSafetensors } from '../../src/io/safetensors.js';
import { FIXTURES, readReference, ref, TINY, TINY_REF } from '../helpers/fixtures.js';
import { maxAbsDiff, relL2, rng } from '../helpers/gpu.js';
import { decodeJpegJs, encodeJpeg, encodeWebp } from '../helpers/images.js';
import { startServer } from '../io/http-server.js';
import { buildCli, expectUsageError, removeCli, runMain, runProcess } from './run.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const LAYOUT = `${FIXTURES}sdxl-turbo-layout`;
/** f32 compute from the fp32 files: the pipeline test/pipeline/e2e.test.ts checks, whose whole
 *  chain stays within float32 rounding of diffusers [≤5.2e-7 there]. */
const F32 = ['--dtype', 'f32', '--variant', 'fp32'];
const SPAWN_TIMEOUT = 60_000;

let tmp: string; // outputs and altered model folders
let cli: string; // the built CLI

beforeAll(async () => {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-cli-test-'));
  cli = await buildCli();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
  await removeCli(cli);
});

/** The tiny pipeline with some files replaced (text or bytes), linked to another file or
 *  removed (null); the others are symlinks to the fixture. */
async function tinyVariant(name: string, changes: Record<string, string | Uint8Array | { link: string } | null>): Promise<string> {
  const dir = join(tmp, name);
  for (const entry of await readdir(TINY, { recursive: true, withFileTypes: true })) {
    if (entry.isDirectory()) continue;
    const path = join(entry.parentPath, entry.name).slice(TINY.length + 1);
    if (path in changes) continue;
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await symlink(join(TINY, path), join(dir, path));
  }
  for (const [path, change] of Object.entries(changes)) {
    if (change === null) continue;
    await mkdir(dirname(join(dir, path)), { recursive: true });
    if (typeof change === 'object' && 'link' in change) await symlink(change.link, join(dir, path));
    else await writeFile(join(dir, path), change);
  }
  return dir;
}

const tinyJson = async (path: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(join(TINY, path), 'utf8'));

/** Stale outputs that no correct run can leave in place: NaN tensors of the reference's shapes
 *  and a black PNG, so a CLI that writes nothing (or the wrong file) fails the comparison. */
async function poisonOutputs(caseName: string, png: string, tensors: string): Promise<void> {
  const reference = await readReference(`${TINY_REF}/e2e_${caseName}.safetensors`);
  const names = ['final_latents', 'image', 'prompt_embeds', 'pooled_prompt_embeds'];
  const list = names.map((name) => {
    const { shape } = ref(reference, `${caseName}.${name}`);
    return { name, dtype: 'F32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(NaN) };
  });
  await writeFile(tensors, encodeSafetensors(list));
  await writeFile(png, await encodePng({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) }));
}

/** The saved tensors and the PNG against diffusers' run `caseName`. */
async function expectReference(caseName: string, png: string, tensors: string): Promise<void> {
  const reference = await readReference(`${TINY_REF}/e2e_${caseName}.safetensors`);
  const saved = await readReference(tensors);
  const errors: string[] = [];
  for (const name of ['final_latents', 'image', 'prompt_embeds', 'pooled_prompt_embeds']) {
    const want = ref(reference, `${caseName}.${name}`);
    const got = ref(saved, name);
    expect(got.shape, name).toEqual(want.shape);
    const err = relL2(got.data, want.data);
    errors.push(`${name} ${err.toExponential(2)}`);
    // See F32: the same bound as the library's end-to-end test.
    expect(err, name).toBeLessThan(1e-5);
  }
  const image = await decodePng(await readFile(png), png);
  const want = ref(reference, `${caseName}.image_uint8`);
  expect([image.height, image.width, 3]).toEqual(want.shape);
  const levels = maxAbsDiff(image.data, want.data);
  console.log(`${caseName} via the CLI: ${errors.join(', ')}, PNG max |Δ| ${levels}`);
  // 8-bit rounding: a value at a rounding edge may land one level off.
  expect(levels).toBeLessThanOrEqual(1);
}

describe('tokenize', () => {
  interface TokenCase {
    prompt: string;
    tokenizer: { input_ids: number[] };
    tokenizer_2: { input_ids: number[] };
  }
  let cases: TokenCase[];
  beforeAll(async () => {
    cases = (JSON.parse(await readFile(`${TINY_REF}/tokens.json`, 'utf8')) as { cases: TokenCase[] }).cases;
  });
  const expected = (c: TokenCase) => ({ tokenizer: c.tokenizer.input_ids, tokenizer_2: c.tokenizer_2.input_ids });

  it('prints the ids diffusers feeds both encoders (a real process)', async () => {
    const c = cases.find((k) => k.prompt === 'a photo of a cat')!;
    const run = await runProcess(cli, ['tokenize', '--model', TINY, '--prompt', c.prompt], SPAWN_TIMEOUT);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.out).toHaveLength(1);
    expect(JSON.parse(run.out[0]!)).toEqual(expected(c));
  });

  it('empty, unicode, emoji, special-token and over-long prompts', async () => {
    const picked = cases.filter(
      (c) => c.prompt === '' || /[\u{1F300}-\u{1FAFF}]|東京|<\|startoftext\|>|\t/u.test(c.prompt) || c.tokenizer.input_ids.at(-1) !== 49407,
    );
    expect(picked.length).toBeGreaterThanOrEqual(5);
    for (const c of picked) {
      const run = await runMain(['tokenize', '--model', TINY, '--prompt', c.prompt]);
      expect(run.code, c.prompt).toBe(0);
      expect(JSON.parse(run.out[0]!), c.prompt).toEqual(expected(c));
    }
  });

  it('reads the tokenizer from an http(s) base URL', async () => {
    const server = await startServer(async (path) => readFile(join(TINY, path)).catch(() => null));
    try {
      const c = cases[1]!;
      const run = await runMain(['tokenize', '--model', `${server.url}/range/`, '--prompt', c.prompt]);
      expect(run.err).toEqual([]);
      expect(JSON.parse(run.out[0]!)).toEqual(expected(c));
    } finally {
      await server.close();
    }
  });
});

describe('generate', () => {
  it('text-to-image with the recorded noise matches diffusers (a real process that exits)', async () => {
    const png = join(tmp, 't2i.png');
    const tensors = join(tmp, 't2i.safetensors');
    await poisonOutputs('t2i_1step_64x64', png, tensors);
    const inputs = `${TINY_REF}/e2e_t2i_1step_64x64.safetensors`; // names with the case prefix, as recorded
    const args = ['--prompt', 'a photo of a cat', '--inputs', inputs, '--save-tensors', tensors, '--width', '64', '--height', '64', '--steps', '1', '--seed', '1234', '--out', png];
    const run = await runProcess(cli, ['generate', '--model', TINY, ...args, ...F32], SPAWN_TIMEOUT);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    expect(run.out).toEqual([`wrote ${png}, ${tensors} (seed 1234)`]);
    await expectReference('t2i_1step_64x64', png, tensors);
    // The generation parameters in the PNG's text chunks, as AUTOMATIC1111 writes them and one by one.
    const text = readPngText(await readFile(png));
    expect(text.parameters).toBe(`a photo of a cat\nSteps: 1, Sampler: Euler a, CFG scale: 0, Seed: 1234, Size: 64x64, Model: ${TINY}`);
    expect(text).toMatchObject({ prompt: 'a photo of a cat', seed: '1234', steps: '1', width: '64', height: '64', model: TINY, software: 'sdxl-turbo-webgpu' });
  });

  it('image-to-image from a PNG with the recorded noise matches diffusers', async () => {
    const reference = await readReference(`${TINY_REF}/e2e_i2i_s0.5_2step_64x64.safetensors`);
    const input = join(tmp, 'lighthouse.png');
    await writeFile(input, await encodePng({ width: 64, height: 64, data: Uint8Array.from(ref(reference, 'i2i_s0.5_2step_64x64.input_image_uint8').data) }));
    const png = join(tmp, 'i2i.png');
    const tensors = join(tmp, 'i2i.safetensors');
    await poisonOutputs('i2i_s0.5_2step_64x64', png, tensors);
    // No --width/--height: the input's own size, as diffusers does. Seed 99, not the recorded 7:
    // only the supplied draws can give diffusers' result.
    const run = await runProcess(cli, [
      'generate', '--model', TINY, '--prompt', 'a watercolor painting of a lighthouse', '--image', input, '--strength', '0.5', '--steps', '2', '--seed', '99',
      '--inputs', `${TINY_REF}/e2e_i2i_s0.5_2step_64x64.safetensors`, '--save-tensors', tensors, '--out', png, ...F32,
    ], SPAWN_TIMEOUT);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    await expectReference('i2i_s0.5_2step_64x64', png, tensors);
  });

  it('image-to-image from a JPEG: the same run as from a PNG of the pixels jpeg-js decodes from it', async () => {
    const reference = await readReference(`${TINY_REF}/e2e_i2i_s0.5_2step_64x64.safetensors`);
    const source = Uint8Array.from(ref(reference, 'i2i_s0.5_2step_64x64.input_image_uint8').data);
    const photo = join(tmp, 'lighthouse.jpg');
    const bytes = encodeJpeg({ width: 64, height: 64, data: source }, 90);
    await writeFile(photo, bytes);
    const decoded = join(tmp, 'lighthouse-decoded.png');
    await writeFile(decoded, await encodePng(decodeJpegJs(bytes)));
    const run = async (image: string, name: string) => {
      const tensors = join(tmp, `${name}.safetensors`);
      const result = await runProcess(cli, [
        'generate', '--model', TINY, '--prompt', 'a watercolor painting of a lighthouse', '--image', image, '--strength', '0.5', '--steps', '2',
        '--inputs', `${TINY_REF}/e2e_i2i_s0.5_2step_64x64.safetensors`, '--save-tensors', tensors, '--out', join(tmp, `${name}.png`), ...F32,
      ], SPAWN_TIMEOUT);
      expect(result.err).toEqual([]);
      expect(result.code).toBe(0);
      return readReference(tensors);
    };
    const fromJpeg = await run(photo, 'from-jpeg');
    const fromPng = await run(decoded, 'from-png');
    // Same pixels in, same draws, same device and code path: the same numbers, bit for bit.
    for (const name of ['final_latents', 'image']) expect(maxAbsDiff(ref(fromJpeg, name).data, ref(fromPng, name).data), name).toBe(0);
    // And it is the recorded image-to-image run: JPEG at quality 90 moves the input by a level
    // or two, so the result is near diffusers' (whose input was the PNG: ≤1e-5 from it), not
    // equal (1.3e-3 here).
    const image = ref(fromJpeg, 'image').data;
    const err = relL2(image, ref(reference, 'i2i_s0.5_2step_64x64.image').data);
    console.log(`i2i from a JPEG (quality 90) vs diffusers from the PNG: image rel L2 ${err.toExponential(2)}`);
    expect(err).toBeGreaterThan(1e-5);
    expect(err).toBeLessThan(1e-2);
  });

  it('image-to-image defaults: the input size rounded down to multiples of 8, the fewest steps of which the strength keeps one', async () => {
    const input = join(tmp, 'odd-size.png');
    const random = rng(75);
    await writeFile(input, await encodePng({ width: 75, height: 45, data: Uint8Array.from({ length: 75 * 45 * 3 }, () => Math.floor(256 * random())) }));
    const out = join(tmp, 'odd-size-out.png');
    const run = await runProcess(cli, ['generate', '--model', TINY, '--prompt', 'a boat', '--image', input, '--out', out, ...F32], SPAWN_TIMEOUT);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    const image = await decodePng(await readFile(out), out);
    expect([image.width, image.height]).toEqual([72, 40]);
    // The library's defaults, which the CLI no longer has its own copy of: 2 steps at strength 0.5.
    expect(readPngText(await readFile(out))).toMatchObject({ steps: '2', strength: '0.5', width: '72', height: '40' });
  });

  it('text-to-image at 72×80: a 9×10 latent, which the UNet rounds up to 5×5 and 3×3 and brings back to each skip', async () => {
    const out = join(tmp, 't2i-72x80.png');
    const tensors = join(tmp, 't2i-72x80.safetensors');
    // The short flags: -m, -p, -W, -H, -s, -o; --metadata none writes no text chunk.
    const run = await runProcess(cli, ['generate', '-m', TINY, '-p', 'a boat', '-W', '72', '-H', '80', '-s', '1', '-o', out, '--save-tensors', tensors, '--metadata', 'none', ...F32], SPAWN_TIMEOUT);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    const latents = ref(await readReference(tensors), 'final_latents');
    expect(latents.shape).toEqual([1, 4, 10, 9]);
    expect(latents.data.every(Number.isFinite)).toBe(true);
    const image = await decodePng(await readFile(out), out);
    expect([image.width, image.height]).toEqual([72, 80]);
    expect(readPngText(await readFile(out))).toEqual({});
  });

  it('prints the seed it drew (--seed -1: random), and --seed N is torch.Generator("cpu").manual_seed(N)', async () => {
    const common = ['generate', '--model', TINY, '--prompt', 'a photo of a cat', '--width', '64', '--height', '64', ...F32];
    const first = await runProcess(cli, [...common, '--seed', '-1', '--out', join(tmp, 'random.png')], SPAWN_TIMEOUT);
    expect(first.code, first.err.join('\n')).toBe(0);
    const seed = /\(seed (\d+)\)$/.exec(first.out[0]!)?.[1];
    expect(seed, first.out[0]).toBeDefined();
    const again = await runProcess(cli, [...common, '--seed', seed!, '--out', join(tmp, 'again.png')], SPAWN_TIMEOUT);
    expect(again.out).toEqual([`wrote ${join(tmp, 'again.png')} (seed ${seed})`]);
    const pixels = async (name: string) => (await decodePng(await readFile(join(tmp, name)), name)).data;
    expect(await pixels('again.png')).toEqual(await pixels('random.png'));
    // Without --inputs, seed 1234 must draw diffusers' recorded noise itself.
    const png = join(tmp, 'seeded.png');
    const tensors = join(tmp, 'seeded.safetensors');
    await poisonOutputs('t2i_1step_64x64', png, tensors);
    const seeded = await runProcess(cli, [...common, '--seed', '1234', '--out', png, '--save-tensors', tensors], SPAWN_TIMEOUT);
    expect(seeded.code, seeded.err.join('\n')).toBe(0);
    await expectReference('t2i_1step_64x64', png, tensors);
  });

  it('a seed above 2^53 is exact (a bigint): 2^64 − 2^32 + 1234 draws what torch draws for it, seed 1234\'s noise (mt19937 keeps the low 32 bits)', async () => {
    const png = join(tmp, 'big-seed.png');
    const tensors = join(tmp, 'big-seed.safetensors');
    await poisonOutputs('t2i_1step_64x64', png, tensors);
    const args = ['generate', '--model', TINY, '--prompt', 'a photo of a cat', '--width', '64', '--height', '64', ...F32];
    const run = await runProcess(cli, [...args, '--seed', '18446744069414585554', '--out', png, '--save-tensors', tensors], SPAWN_TIMEOUT);
    expect(run.out).toEqual([`wrote ${png}, ${tensors} (seed 18446744069414585554)`]);
    await expectReference('t2i_1step_64x64', png, tensors);
  });

  it('a batch (--prompt repeated, --num-images) writes OUT-1.png … prompt by prompt; --verbose, --profile', async () => {
    const out = join(tmp, 'batch.png');
    const args = ['--prompt', 'a photo of a cat', '--prompt', '', '--num-images', '2', '--seed', '5', '--width', '64', '--height', '96', '--out', out];
    const run = await runProcess(cli, ['generate', '--model', TINY, ...args, ...F32, '--verbose', '--profile'], SPAWN_TIMEOUT);
    expect(run.err).toEqual([]);
    expect(run.code).toBe(0);
    const paths = [1, 2, 3, 4].map((i) => join(tmp, `batch-${i}.png`));
    expect(run.out).toContain(`wrote ${paths.join(', ')} (seed 5)`);
    for (const line of [
      /^adapter: .+ \(shader-f16: (yes|no), max binding \d+ B\)$/,
      /^compute: f32 \(text encoders, UNet\), f32 \(VAE\)$/,
      /^weights: unet\/diffusion_pytorch_model\.safetensors$/,
      /^GPU memory plan: 64×96, batch 4 /,
      /^unet +\d+\.\d +\d+\.\d +\d+\.\d  f32$/,
      /^(encode-prompt|denoise|decode) +\d+ ms$/,
      // Per-kernel GPU times, or why there are none.
      /^(conv2d\(.+\d+× +\d+\.\d\d ms|profile: .+ has no timestamp-query, so no per-kernel GPU times)$/,
    ]) {
      expect(run.out.some((l) => line.test(l)), `${line} in\n${run.out.join('\n')}`).toBe(true);
    }
    const images = await Promise.all(paths.map(async (p) => await decodePng(await readFile(p), p)));
    for (const image of images) expect([image.width, image.height]).toEqual([64, 96]);
    // Every row has its own noise, so no two images agree.
    for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) expect(maxAbsDiff(images[i]!.data, images[j]!.data), `${i} vs ${j}`).toBeGreaterThan(0);
  });
});

describe('help and failures', () => {
  it('--version prints the package version', async () => {
    const { version } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) expect(await runMain([flag])).toEqual({ code: 0, out: [version], err: [] });
  });

  it('--help, help and no command print the usage, exit 0', async () => {
    for (const args of [[], ['--help'], ['help'], ['generate', '--help'], ['tokenize', '-h']]) {
      const run = await runMain(args);
      expect(run.code, args.join(' ')).toBe(0);
      expect(run.out[0], args.join(' ')).toBe('sdxl-turbo — SDXL-Turbo on WebGPU');
      expect(run.out).toContain('Exit status: 0 done, 2 bad input (one line on stderr naming it), 1 any other failure.');
    }
  });

  it('a failure after the run (the output cannot be written) exits 1 with the message, and the process ends', async () => {
    // A dangling link passes the up-front folder checks; writing through it fails.
    const out = join(tmp, 'dangling.png');
    await symlink(join(tmp, 'no-such-dir', 'x.png'), out);
    const run = await runProcess(cli, ['generate', '--model', TINY, '--prompt', 'x', '--width', '64', '--height', '64', '--out', out, ...F32], SPAWN_TIMEOUT);
    expect(run.out).toEqual([]);
    expect(run.err).toEqual([`sdxl-turbo: error: ${out}: cannot write (ENOENT)`]);
    expect(run.code).toBe(1);
  });
});

describe('bad input: one line naming the culprit, exit 2', () => {
  const base = ['generate', '--model', TINY, '--prompt', 'a cat'];
  let png: string; // a valid input picture
  beforeAll(async () => {
    png = join(tmp, 'input.png');
    await writeFile(png, await encodePng({ width: 40, height: 32, data: new Uint8Array(40 * 32 * 3).fill(128) }));
  });

  it('real processes exit with 2: an unknown option, a missing model folder, a size the device cannot hold', async () => {
    expectUsageError(await runProcess(cli, [...base, '--guidance', '7'], SPAWN_TIMEOUT), "'--guidance'");
    expectUsageError(await runProcess(cli, ['generate', '--model', join(tmp, 'nowhere'), '--prompt', 'x'], SPAWN_TIMEOUT), join(tmp, 'nowhere'), 'no such folder');
    // After the GPU is open: the process must still dispose it and exit.
    const big = await runProcess(cli, [...base, '--width', '16384', '--height', '16384', ...F32], SPAWN_TIMEOUT);
    expectUsageError(big, '16384×16384 is too large for this device', /maxBufferSize|maxStorageBufferBindingSize/);
  });

  it('the built CLI decodes a WebP (its decoder\'s WebAssembly found from the bundle), then checks the options', async () => {
    const webp = join(tmp, 'input.webp');
    await writeFile(webp, await encodeWebp({ width: 16, height: 16, data: new Uint8Array(16 * 16 * 3).fill(90) }, { lossless: 1 }));
    // A strength the library refuses before the model opens: reached only once the image decoded.
    expectUsageError(await runProcess(cli, [...base, '--image', webp, '--strength', '1.5'], SPAWN_TIMEOUT), '--strength must be in (0, 1], got 1.5');
  });

  const options: Array<[string, string[], Array<string | RegExp>]> = [
    ['unknown command', ['paint'], ['unknown command "paint"']],
    ['unknown option', [...base, '--cfg', '2'], ["Unknown option '--cfg'"]],
    ['a positional argument', [...base, 'extra'], ["'extra'"]],
    ['an option without its value', [...base, '--steps'], ["'-s, --steps <value>' argument missing"]],
    ['no --model', ['generate', '--prompt', 'x'], ['--model is required']],
    ['no --prompt', ['generate', '--model', TINY], ['--prompt is required']],
    ['fractional steps', [...base, '--steps', '1.5'], ['--steps must be a whole number, got "1.5"']],
    ['zero steps', [...base, '--steps', '0'], ['--steps must be an integer in [1, 1000], got 0']],
    ['a seed that is not a number', [...base, '--seed', '12ab'], ['--seed must be a whole number, got "12ab"']],
    ['a negative seed other than -1', [...base, '--seed=-2'], ['--seed must be a whole number, got "-2"']],
    ['a seed past 2^64 − 1', [...base, '--seed', '18446744073709551616'], ['--seed must be an integer in [0, 18446744073709551615], got 18446744073709551616']],
    ['a seed -1 before a bad option still parses', [...base, '--seed', '-1', '--steps', 'x'], ['--steps must be a whole number, got "x"']],
    ['a width not a multiple of 8', [...base, '--width', '100'], ['--width must be a multiple of 8, got 100']],
    ['a non-integer height', [...base, '--height', '64.0'], ['--height must be a whole number, got "64.0"']],
    ['a size over the maximum', [...base, '--height', '16392'], ['--height must be an integer in [8, 16384], got 16392']],
    ['zero images per prompt', [...base, '--num-images', '0'], ['--num-images must be an integer in [1, 64], got 0']],
    ['--strength without --image', [...base, '--strength', '0.5'], ['--strength needs image (image-to-image)']],
    ['a bad --metadata', [...base, '--metadata', 'some'], ['--metadata must be all or none, got "some"']],
    ['--out not a PNG', [...base, '--out', 'cat.jpg'], ['--out must name a .png file, got "cat.jpg"']],
    ['--out in a missing folder', [...base, '--out', '/nonexistent-dir/cat.png'], ['--out /nonexistent-dir/cat.png: no such directory']],
    ['--save-tensors in a missing folder', [...base, '--save-tensors', '/nonexistent-dir/t.safetensors'], ['--save-tensors /nonexistent-dir/t.safetensors']],
    ['a bad --variant', [...base, '--variant', 'int8'], ['--variant must be fp16 or fp32, got "int8"']],
    ['a bad --dtype', [...base, '--dtype', 'bf16'], ['--dtype must be f16 or f32, got "bf16"']],
    ['tokenize without --prompt', ['tokenize', '--model', TINY], ['--prompt is required']],
    ['tokenize with an unknown option', ['tokenize', '--model', TINY, '--prompt', 'x', '--steps', '1'], ["Unknown option '--steps'"]],
  ];
  for (const [what, args, culprits] of options) {
    it(what, async () => expectUsageError(await runMain(args), ...culprits));
  }

  it('image-to-image: strength outside (0, 1], steps × strength < 1; an --image unreadable, of another format, cut, too large', async () => {
    expectUsageError(await runMain([...base, '--image', png, '--strength', '1.5']), '--strength must be in (0, 1], got 1.5');
    expectUsageError(await runMain([...base, '--image', png, '--strength', '0']), '--strength must be in (0, 1], got 0');
    expectUsageError(await runMain([...base, '--image', png, '--strength', 'half']), '--strength must be a number, got "half"');
    expectUsageError(await runMain([...base, '--image', png, '--strength', '0.4', '--steps', '2']), 'steps 2 × strength 0.4');
    const missing = join(tmp, 'missing.png');
    expectUsageError(await runMain([...base, '--image', missing]), `--image: ${missing}: cannot read (ENOENT)`);
    const text = join(tmp, 'text.png');
    await writeFile(text, 'not a picture');
    expectUsageError(await runMain([...base, '--image', text]), `--image: ${text}: not an image this can read (an unknown format); PNG, JPEG and WebP are supported`);
    const gif = join(tmp, 'anim.gif');
    await writeFile(gif, 'GIF89a\x01\x00\x01\x00');
    expectUsageError(await runMain([...base, '--image', gif]), `--image: ${gif}: not an image this can read (GIF); PNG, JPEG and WebP are supported`);
    const cut = join(tmp, 'cut.jpg');
    const whole = encodeJpeg({ width: 16, height: 16, data: new Uint8Array(16 * 16 * 3).fill(128) }, 90);
    await writeFile(cut, whole.subarray(0, whole.byteLength - 3));
    expectUsageError(await runMain([...base, '--image', cut]), `--image: ${cut}: truncated JPEG (no end-of-image marker)`);
    const cutPng = join(tmp, 'cut.png');
    await writeFile(cutPng, (await readFile(png)).subarray(0, 60));
    expectUsageError(await runMain([...base, '--image', cutPng]), `--image: ${cutPng}: invalid PNG: truncated`);
    // Sparse: refused from its size, never read.
    const huge = join(tmp, 'huge.webp');
    await writeFile(huge, '');
    await truncate(huge, 2 ** 28 + 1);
    expectUsageError(await runMain([...base, '--image', huge]), `--image: ${huge}: too large (${2 ** 28 + 1} bytes; at most ${2 ** 28})`);
    const wide = join(tmp, 'wide.png');
    await writeFile(wide, Buffer.concat([(await readFile(png)).subarray(0, 16), Buffer.from([0, 0, 0x40, 0, 0, 0, 0x40, 0])]));
    expectUsageError(await runMain([...base, '--image', wide]), `--image: ${wide}: too large (16384×16384 pixels; at most 67108864 pixels)`);
  });

  it('--inputs: unreadable, not safetensors, no random tensors, several runs, not drawn, wrong size', async () => {
    const missing = join(tmp, 'missing.safetensors');
    expectUsageError(await runMain([...base, '--inputs', missing]), `--inputs: ${missing}: cannot open (ENOENT)`);
    expectUsageError(await runMain([...base, '--inputs', png]), `--inputs: ${png}: invalid safetensors header`);
    expectUsageError(await runMain([...base, '--inputs', `${TINY_REF}/scheduler.safetensors`]), 'scheduler.safetensors: no random tensors');
    const two = join(tmp, 'two-runs.safetensors');
    const t = (name: string) => ({ name, dtype: 'F32' as const, shape: [1, 4, 8, 8], data: new Float32Array(256) });
    await writeFile(two, encodeSafetensors([t('a.initial_latents'), t('b.step0.noise')]));
    expectUsageError(await runMain([...base, '--inputs', two]), 'several runs', '"a."', '"b."');
    const i2iInputs = `${TINY_REF}/e2e_i2i_s0.5_2step_64x64.safetensors`;
    expectUsageError(await runMain([...base, '--width', '64', '--height', '64', '--inputs', i2iInputs, ...F32]), 'add_noise_noise is not drawn by this run', 'initial_latents, step0.noise');
    // Recorded at 64×96: the wrong size for a 64×64 run, named with its expected shape.
    const wide = `${TINY_REF}/e2e_t2i_2step_64x96.safetensors`;
    expectUsageError(
      await runMain([...base, '--width', '64', '--height', '64', '--steps', '2', '--inputs', wide, ...F32]),
      `--inputs ${wide}: initial_latents has 384 values, expected 256 for shape (1, 4, 8, 8)`,
    );
  });

  it('model folders: missing files, another pipeline, a config of another family, mismatched weights', async () => {
    const noConfig = await tinyVariant('no-unet-config', { 'unet/config.json': null });
    expectUsageError(await runMain(['generate', '--model', noConfig, '--prompt', 'x']), `${noConfig}/unet/config.json: missing`);
    const noWeights = await tinyVariant('no-fp16-unet', { 'unet/diffusion_pytorch_model.fp16.safetensors': null });
    expectUsageError(await runMain(['generate', '--model', noWeights, '--prompt', 'x', '--variant', 'fp16']), 'no fp16 weights for unet');
    const noVocab = await tinyVariant('no-vocab', { 'tokenizer_2/vocab.json': null });
    expectUsageError(await runMain(['tokenize', '--model', noVocab, '--prompt', 'x']), `${noVocab}/tokenizer_2/vocab.json: missing`);
    const index = await tinyJson('model_index.json');
    const sd15 = await tinyVariant('sd15-index', { 'model_index.json': JSON.stringify({ ...index, _class_name: 'StableDiffusionPipeline' }) });
    expectUsageError(await runMain(['generate', '--model', sd15, '--prompt', 'x']), 'StableDiffusionPipeline', 'model_index.json');
    // An SD 1.5-style UNet config: no added text/time embedding, 768-wide context.
    const unet = await tinyJson('unet/config.json');
    const family = await tinyVariant('sd15-unet', { 'unet/config.json': JSON.stringify({ ...unet, addition_embed_type: null, cross_attention_dim: 768 }) });
    expectUsageError(await runMain(['generate', '--model', family, '--prompt', 'x', '--width', '64', '--height', '64']), `${family}/unet/config.json`, 'addition_embed_type');
    const swapped = await tinyVariant('vae-as-unet', { 'unet/diffusion_pytorch_model.safetensors': { link: `${TINY}/vae/diffusion_pytorch_model.safetensors` } });
    expectUsageError(
      await runProcess(cli, ['generate', '--model', swapped, '--prompt', 'x', '--width', '64', '--height', '64', ...F32], SPAWN_TIMEOUT),
      new RegExp(`^sdxl-turbo: unet weights in ${swapped}/unet/diffusion_pytorch_model\\.safetensors do not match the model: \\d+ missing \\(time_embedding\\..*, …\\), \\d+ unexpected \\(decoder\\..*, …\\)$`),
    );
  });

  it('the real SDXL-Turbo configs with the tiny weight files: every table refused in one line, before the GPU opens', async () => {
    // The weight tables are checked against the configs before the device opens (in this
    // process, which opens none), whatever the size: the size is checked against the device next.
    const changes: Record<string, string> = {};
    for (const path of ['model_index.json', 'scheduler/scheduler_config.json', ...['text_encoder', 'text_encoder_2', 'unet', 'vae'].map((c) => `${c}/config.json`)]) {
      changes[path] = await readFile(join(LAYOUT, path), 'utf8');
    }
    const real = await tinyVariant('real-configs', changes);
    for (const size of ['16384', '512']) {
      const run = await runMain(['generate', '--model', real, '--prompt', 'x', '--width', size, '--height', size, ...F32]);
      expectUsageError(run, 'text_encoder weights in', '; text_encoder_2 weights in', '; unet weights in', '; vae weights in');
    }
  });
});
