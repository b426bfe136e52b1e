// The package as a user gets it: `npm pack` (its prepack builds the bundles and the type
// declarations), unpacked into a fresh folder as npm installs it, with the dependencies linked
// from this repository's node_modules (so the test needs no network). Then: the tarball holds
// only what users need; a TypeScript consumer type-checks against the shipped declarations with
// skipLibCheck off; an ESM consumer imports the library and gets its errors; `npx sdxl-turbo`
// answers --help and --version. No GPU is needed.

import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const NAME = 'sdxl-turbo-webgpu';

let tmp: string;
let consumer: string;
let packed: { filename: string; size: number; files: Array<{ path: string }> };
let manifest: { version: string; dependencies: Record<string, string>; bin: Record<string, string> };

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sdxl-package-test-'));
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: REPO, maxBuffer: 1 << 26 });
  // The prepack build may print before npm's JSON.
  [packed] = JSON.parse(stdout.slice(stdout.search(/^\[/m)));
  consumer = join(tmp, 'consumer');
  const installed = join(consumer, 'node_modules', NAME);
  await mkdir(installed, { recursive: true });
  await run('tar', ['xzf', join(tmp, packed.filename), '-C', installed, '--strip-components=1']);
  manifest = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8'));
  for (const dep of Object.keys(manifest.dependencies)) {
    await mkdir(dirname(join(consumer, 'node_modules', dep)), { recursive: true });
    await symlink(join(REPO, 'node_modules', dep), join(consumer, 'node_modules', dep));
  }
  // What npm does for package.json's bin.
  await mkdir(join(consumer, 'node_modules', '.bin'));
  for (const [bin, path] of Object.entries(manifest.bin)) await symlink(join('..', NAME, path), join(consumer, 'node_modules', '.bin', bin));
  await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
}, 300_000);
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('ships the bundles, the declarations and the docs, and nothing else', () => {
    const files = packed.files.map((f) => f.path).sort();
    for (const needed of ['package.json', 'README.md', 'BENCHMARKS.md', 'dist/index.js', 'dist/cli.js', 'dist/browser/sdxl-turbo.js', 'dist/types/index.d.ts', 'dist/types/browser.d.ts']) {
      expect(files).toContain(needed);
    }
    const unwanted = files.filter((f) => /^(src|test|tools|web|kernels|docs|scripts|weights)\/|\.map$|^dist\/(tools|web)\/|\.tmp-/.test(f));
    expect(unwanted).toEqual([]);
    console.log(`${packed.filename}: ${(packed.size / 1e3).toFixed(0)} kB, ${files.length} files`);
    // The bundles and declarations are a few hundred kB each (kernels inlined); a stray build
    // output or fixture would be megabytes.
    expect(packed.size).toBeLessThan(2e6);
  });

  it('a TypeScript consumer type-checks against the shipped declarations, skipLibCheck off', async () => {
    await writeFile(
      join(consumer, 'node.ts'),
      `import { GpuError, loadPipeline, NetworkError, NoAdapterError, readImage, readPngText, UsageError, type GenerateResult, type Pipeline, type ProgressEvent, type RgbImage } from '${NAME}';

export async function main(): Promise<void> {
  const pipe: Pipeline = await loadPipeline('stabilityai/sdxl-turbo', {
    preflight: { width: 512, height: 512 },
    onProgress: (e: ProgressEvent) => console.log(e.stage, e.done, e.total, e.stage === 'load' ? e.component : ''),
  });
  const result: GenerateResult = await pipe.generate({ prompt: 'a cat', seed: 42 });
  const png: Uint8Array = await result.images[0]!.png();
  const pixels: { width: number; data: Uint8ClampedArray } = result.images[0]!.rgba();
  console.log(readPngText(png).parameters, pixels.data.length, result.images[0]!.parameters.seed);
  const edited = await pipe.imageToImage({ prompt: 'a watercolor', image: result.images[0]! });
  console.log(edited.seed, [UsageError, NetworkError, GpuError, NoAdapterError].map((c) => c.name));
  const photo: RgbImage = await readImage('photo.jpg', { maxPixels: 4096 * 4096 });
  await pipe.imageToImage({ prompt: 'a watercolor', image: photo });
  await pipe.dispose();
}
`,
    );
    await writeFile(
      join(consumer, 'browser.ts'),
      `import { decodeImage, loadPipeline } from '${NAME}/browser';

export async function main(photo: File): Promise<Blob> {
  const pipe = await loadPipeline('stabilityai/sdxl-turbo', { cache: true });
  await pipe.imageToImage({ prompt: 'a watercolor', image: await decodeImage(photo) });
  return (await pipe.generate({ prompt: 'a cat' })).images[0]!.png();
}
`,
    );
    const tsconfig = {
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'], types: [], strict: true, skipLibCheck: false, noEmit: true },
      files: ['node.ts', 'browser.ts'],
    };
    await writeFile(join(consumer, 'tsconfig.json'), JSON.stringify(tsconfig));
    const tsc = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await run(process.execPath, [tsc, '-p', consumer], { cwd: consumer }).catch((e: { stdout: string }) => e);
    expect(result.stdout).toBe('');
  });

  it('an ESM consumer imports the library and gets its typed errors, without a GPU', async () => {
    await writeFile(
      join(consumer, 'consumer.mjs'),
      `import * as lib from '${NAME}';
const failure = await lib.loadPipeline('${join(tmp, 'no-such-model')}', { preflight: { width: 100 } }).catch((e) => e);
console.log(JSON.stringify({ exports: Object.keys(lib).sort(), name: failure.name, option: failure.option, usage: failure instanceof lib.UsageError }));
`,
    );
    const { stdout } = await run(process.execPath, ['consumer.mjs'], { cwd: consumer });
    const got = JSON.parse(stdout) as { exports: string[]; name: string; option: string; usage: boolean };
    expect(got.exports).toEqual(['GeneratedImage', 'GpuError', 'NetworkError', 'NoAdapterError', 'NonFiniteError', 'SdxlTurboPipeline', 'UsageError', 'decodeImage', 'loadPipeline', 'readImage', 'readPng', 'readPngText']);
    // The options are checked before the source is opened.
    expect(got).toMatchObject({ name: 'UsageError', option: 'width', usage: true });
  });

  it('npx sdxl-turbo --help and --version', async () => {
    const help = await run('npx', ['--no', '--', 'sdxl-turbo', '--help'], { cwd: consumer });
    expect(help.stdout.split('\n')[0]).toBe('sdxl-turbo — SDXL-Turbo on WebGPU');
    const version = await run('npx', ['--no', '--', 'sdxl-turbo', '--version'], { cwd: consumer });
    expect(version.stdout.trim()).toBe(manifest.version);
  });
});
