// Builds the browser library (dist/browser/sdxl-turbo.js, ESM, WGSL inlined) and the demo page
// (dist/web/: index.html, style.css, main.js). Used by tools/build.mjs and the browser tests.
// Fails when anything Node-only ends up in a browser bundle.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { join } from 'node:path';

const browser = { bundle: true, format: 'esm', platform: 'browser', target: 'es2022', sourcemap: true, loader: { '.wgsl': 'text', '.txt': 'text' }, logLevel: 'warning', metafile: true };
const NODE_ONLY = /^(src\/node\/|src\/io\/node-file\.ts|src\/io\/png\.ts|src\/gpu\/node\.ts|src\/cli\.ts|src\/index\.ts)/;

/** Bundles one browser entry (extra esbuild options merged in) and checks it is Node-free. */
export async function buildBrowserBundle(options) {
  const { metafile } = await build({ ...browser, ...options });
  const problems = [];
  for (const [out, { imports }] of Object.entries(metafile.outputs)) {
    for (const { path } of imports) if (path.startsWith('node:') || builtinModules.includes(path)) problems.push(`${out} imports ${path}`);
  }
  for (const input of Object.keys(metafile.inputs)) if (NODE_ONLY.test(input)) problems.push(`${input} (Node-only) is bundled`);
  if (problems.length > 0) throw new Error(`browser bundle ${options.outfile}: ${problems.join('; ')}`);
}

export async function buildWeb(outdir = 'dist') {
  // Shipped in the package: no source map.
  await buildBrowserBundle({ entryPoints: ['src/browser.ts'], outfile: join(outdir, 'browser/sdxl-turbo.js'), sourcemap: false });
  await buildBrowserBundle({ entryPoints: ['web/main.ts'], outfile: join(outdir, 'web/main.js') });
  await mkdir(join(outdir, 'web'), { recursive: true });
  for (const file of ['index.html', 'style.css']) await copyFile(join('web', file), join(outdir, 'web', file));
}
