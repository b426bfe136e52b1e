// Builds the Node library, the CLI and the tools: dist/index.js, dist/cli.js (package.json's
// main and bin) and dist/tools/*.js. Used by tools/build.mjs and the CLI tests.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

/** Entry → output name under outdir. */
const ENTRIES = {
  'src/index.ts': 'index',
  'src/cli.ts': 'cli',
  'tools/bench-kernels.ts': 'tools/bench-kernels',
  'tools/parity-real-size.ts': 'tools/parity-real-size',
  'tools/bench-pipeline.ts': 'tools/bench-pipeline',
  'tools/serve-web.ts': 'tools/serve-web',
};

/** Bundles `entries` (default all; absent files skipped) into `outdir`; npm packages stay imports. */
export async function buildNode(outdir = 'dist', entries = Object.keys(ENTRIES)) {
  await build({
    bundle: true,
    format: 'esm',
    sourcemap: true,
    loader: { '.wgsl': 'text' },
    logLevel: 'warning',
    platform: 'node',
    target: 'node20',
    entryPoints: entries.filter((f) => existsSync(f)).map((f) => ({ in: f, out: ENTRIES[f] })),
    outdir,
    packages: 'external',
  });
}
