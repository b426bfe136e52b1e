// Builds the Node library, the CLI and the tools: dist/index.js, dist/cli.js (package.json's
// main and bin; shipped, without source maps) and dist/tools/*.js. Used by tools/build.mjs and
// the CLI tests.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Entry → output name under outdir: what the package ships (no source maps), then the tools. */
const SHIPPED = {
  'src/index.ts': 'index',
  'src/cli.ts': 'cli',
};
const TOOLS = {
  'tools/bench-kernels.ts': 'tools/bench-kernels',
  'tools/bench-attention.ts': 'tools/bench-attention',
  'tools/bench-subgroup-matrix.ts': 'tools/bench-subgroup-matrix',
  'tools/parity-real-size.ts': 'tools/parity-real-size',
  'tools/bench-pipeline.ts': 'tools/bench-pipeline',
  'tools/bench-live.ts': 'tools/bench-live',
  'tools/bench-soak.ts': 'tools/bench-soak',
  'tools/bench-synthetic-load.ts': 'tools/bench-synthetic-load',
  'tools/serve-web.ts': 'tools/serve-web',
};

/** Bundles `entries` (paths from the repo root; default all, absent ones skipped) into `outdir`
 *  (relative to the working directory); npm packages stay imports. */
export async function buildNode(outdir = 'dist', entries = [...Object.keys(SHIPPED), ...Object.keys(TOOLS)]) {
  for (const [table, sourcemap] of [[SHIPPED, false], [TOOLS, true]]) {
    const picked = entries.filter((f) => f in table && existsSync(ROOT + f));
    if (picked.length === 0) continue;
    await build({
      bundle: true,
      format: 'esm',
      sourcemap,
      loader: { '.wgsl': 'text', '.txt': 'text' },
      logLevel: 'warning',
      platform: 'node',
      target: 'node20',
      absWorkingDir: ROOT,
      entryPoints: picked.map((f) => ({ in: f, out: table[f] })),
      outdir: resolve(outdir),
      packages: 'external',
    });
  }
}
