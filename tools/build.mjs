// Builds the Node library + CLI + tools (dist/) and the browser bundle (dist/browser/).
// WGSL kernels are inlined as text in both.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';

const entries = (list) => list.filter((f) => existsSync(f));
const common = { bundle: true, format: 'esm', sourcemap: true, loader: { '.wgsl': 'text' }, logLevel: 'warning' };

await build({
  ...common,
  platform: 'node',
  target: 'node20',
  entryPoints: entries(['src/index.ts', 'src/cli.ts', 'tools/bench-kernels.ts', 'tools/parity-real-size.ts', 'tools/bench-pipeline.ts']),
  outdir: 'dist',
  outbase: '.',
  entryNames: '[dir]/[name]',
  packages: 'external',
  banner: { js: '' },
});

if (existsSync('src/browser.ts')) {
  await build({ ...common, platform: 'browser', target: 'es2022', entryPoints: ['src/browser.ts'], outfile: 'dist/browser/sdxl-turbo.js' });
}
