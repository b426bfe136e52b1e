// Builds the Node library, the CLI and the tools: dist/index.js, dist/cli.js (package.json's
// main and bin) and dist/tools/*.js. Used by tools/build.mjs and the CLI tests.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Entry → output name under outdir. */
const ENTRIES = {
  'src/index.ts': 'index',
  'src/cli.ts': 'cli',
  'tools/bench-kernels.ts': 'tools/bench-kernels',
  'tools/parity-real-size.ts': 'tools/parity-real-size',
  'tools/bench-pipeline.ts': 'tools/bench-pipeline',
  'tools/serve-web.ts': 'tools/serve-web',
};

/** Bundles `entries` (paths from the repo root; default all, absent ones skipped) into `outdir`
 *  (relative to the working directory); npm packages stay imports. */
export async function buildNode(outdir = 'dist', entries = Object.keys(ENTRIES)) {
  await build({
    bundle: true,
    format: 'esm',
    sourcemap: true,
    loader: { '.wgsl': 'text' },
    logLevel: 'warning',
    platform: 'node',
    target: 'node20',
    absWorkingDir: ROOT,
    entryPoints: entries.filter((f) => existsSync(ROOT + f)).map((f) => ({ in: f, out: ENTRIES[f] })),
    outdir: resolve(outdir),
    packages: 'external',
  });
}
