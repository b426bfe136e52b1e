// The GPU bundle's cheap parts (tools/gpu-bundle.mjs, BENCHMARKS.md "On any Linux GPU box"):
// run.sh's choice of Vulkan driver, on fake ICD folders, its check of the files against
// MANIFEST.txt, on a fake bundle, and the PyTorch baseline's case list (no torch needed). The bundle itself is built and run by hand (`npm run gpu:bundle`, then
// `bash .gpu-bundle/run.sh --small OUT`): it takes minutes and a download.

import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const RUN_SH = join(REPO, 'tools/gpu-bundle/run.sh');
const tmp = mkdtempSync(join(tmpdir(), 'gpu-bundle-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** An ICD folder holding `files` (name → library_path). */
function icdDir(name: string, files: Record<string, string>): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, lib] of Object.entries(files)) {
    writeFileSync(join(dir, file), JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: lib, api_version: '1.3.0' } }));
  }
  return dir;
}

function findIcd(dirs: string[], vendors: string): { status: number | null; out: string } {
  const r = spawnSync('bash', [RUN_SH, '--find-icd'], { env: { PATH: process.env.PATH, SDXL_ICD_DIRS: dirs.join(':'), SDXL_GPU_VENDORS: vendors }, encoding: 'utf8' });
  return { status: r.status, out: r.stdout.trim() };
}

describe('run.sh --find-icd', () => {
  const mesa = icdDir('mesa', { 'lvp_icd.json': 'libvulkan_lvp.so', 'radeon_icd.json': 'libvulkan_radeon.so', 'intel_icd.json': 'libvulkan_intel.so' });
  const nvidia = icdDir('nvidia', { 'nvidia_icd.json': 'libGLX_nvidia.so.0' });

  it('takes the NVIDIA driver where an NVIDIA GPU is seen, from any folder', () => {
    expect(findIcd([mesa, nvidia], 'nvidia')).toEqual({ status: 0, out: `nvidia\t${nvidia}/nvidia_icd.json` });
  });
  it('takes AMD (RADV) only where AMD hardware is seen: Mesa installs its ICD file regardless', () => {
    expect(findIcd([mesa, nvidia], 'amd')).toEqual({ status: 0, out: `amd\t${mesa}/radeon_icd.json` });
    expect(findIcd([mesa, nvidia], '').out).toBe(`lavapipe\t${mesa}/lvp_icd.json`);
  });
  it('falls back to lavapipe, then to whatever is installed, and says none when nothing is', () => {
    expect(findIcd([nvidia, mesa], '').out).toBe(`lavapipe\t${mesa}/lvp_icd.json`);
    const other = icdDir('other', { 'virtio_icd.json': 'libvulkan_virtio.so' });
    expect(findIcd([other], '').out).toBe(`other\t${other}/virtio_icd.json`);
    expect(findIcd([join(tmp, 'absent')], 'nvidia')).toEqual({ status: 1, out: 'none' });
  });
});

describe('run.sh --check-files', () => {
  /** A bundle folder: run.sh, `files`, and a MANIFEST.txt of `listed` (name → content). */
  function bundle(name: string, listed: Record<string, string>, files: Record<string, string>): string {
    const dir = join(tmp, name);
    mkdirSync(join(dir, 'js'), { recursive: true });
    copyFileSync(RUN_SH, join(dir, 'run.sh'));
    for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, file), content);
    const lines = Object.entries(listed).map(([file, content]) => `${createHash('sha256').update(content).digest('hex')}  ${String(content.length).padStart(10)}  ${file}`);
    writeFileSync(join(dir, 'MANIFEST.txt'), `SDXL-Turbo WebGPU GPU benchmark bundle — test\nnode …\nRun: bash run.sh\n\n${lines.join('\n')}\n`);
    return dir;
  }
  const check = (dir: string) => spawnSync('bash', [join(dir, 'run.sh'), '--check-files'], { encoding: 'utf8' });
  const listed = { 'node.xz.1': 'first half', 'node.xz.2': 'second half', 'js/bench.mjs': 'console.log(1)' };

  it('passes a bundle whose every listed file is there, unchanged', () => {
    const r = check(bundle('whole', listed, listed));
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('the 3 files of MANIFEST.txt are all here and intact');
  });
  it('names a file a device-tool call left behind, and one cut short, and fails', () => {
    const r = check(bundle('parts', listed, { 'node.xz.1': 'first half', 'js/bench.mjs': 'console.lo' }));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('node.xz.2 is missing');
    expect(r.stderr).toMatch(/js\/bench\.mjs is not the file MANIFEST\.txt lists \(sha256 differs; 10 bytes, 14 expected\)/);
    expect(r.stderr).not.toContain('node.xz.1');
  });
  it('fails without a manifest, or with one that lists nothing', () => {
    const dir = bundle('empty', {}, {});
    expect(check(dir).stderr).toContain('MANIFEST.txt lists no files');
    rmSync(join(dir, 'MANIFEST.txt'));
    expect(check(dir)).toMatchObject({ status: 1, stderr: expect.stringContaining('MANIFEST.txt is missing') });
  });
});

const python = spawnSync('python3', ['--version']).status === 0;

describe.skipIf(!python)('torch-baseline.py --list', () => {
  it("has bench-kernels' cases: the 934 calls of unet-call-shapes.json, 58 distinct with the group norms", () => {
    const out = execFileSync('python3', [join(REPO, 'tools/torch-baseline.py'), '--list'], { cwd: REPO, encoding: 'utf8' });
    expect(out.trim().split('\n').at(-1)).toBe('934 calls, 58 distinct cases');
    expect(out).toMatch(/^linear +256×1280→1280 +240$/m);
    expect(out).toMatch(/^conv2d +1280×16×16→1280 3×3 +10$/m);
    expect(out).toMatch(/^attention +1024×77 10h×64 +10$/m);
    expect(out).toMatch(/^groupnorm\+silu +320×64×64 32g +8$/m);
  });
});
