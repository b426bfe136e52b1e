// Builds the Node library + CLI + tools (dist/), the browser bundle (dist/browser/) and the demo
// page (dist/web/, see tools/build-web.mjs).
// WGSL kernels are inlined as text in both.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { buildWeb } from './build-web.mjs';

const entries = (list) => list.filter((f) => existsSync(f));
const common = { bundle: true, format: 'esm', sourcemap: true, loader: { '.wgsl': 'text' }, logLevel: 'warning' };

await build({
  ...common,
  platform: 'node',
  target: 'node20',
  entryPoints: entries(['src/index.ts', 'src/cli.ts', 'tools/bench-kernels.ts', 'tools/parity-real-size.ts', 'tools/bench-pipeline.ts', 'tools/serve-web.ts']),
  outdir: 'dist',
  outbase: '.',
  entryNames: '[dir]/[name]',
  packages: 'external',
  banner: { js: '' },
});

await buildWeb();
