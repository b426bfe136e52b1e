// npm run web [-- --model DIR]: serves the built demo page (dist/web) on 127.0.0.1:$PORT (default
// 8080), and with --model a local diffusers folder under /model/, which the page then loads by
// default. 127.0.0.1 counts as a secure context, so WebGPU and Cache Storage work over plain http.

import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startStaticServer } from './static-server.js';

const USAGE = 'usage: npm run web [-- --model DIR]   (port: $PORT, default 8080)';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) return void console.log(USAGE);
  // This file runs as dist/tools/serve-web.js, next to dist/web.
  const page = fileURLToPath(new URL('../web/', import.meta.url));
  if (!(await stat(`${page}index.html`).catch(() => null))) throw new Error(`${page}index.html is missing: run npm run build first`);
  const mounts: Record<string, string> = { '/': page };
  if (values.model !== undefined) {
    if (!(await stat(`${values.model}/model_index.json`).catch(() => null))) throw new Error(`--model ${values.model}: no model_index.json there (expected a diffusers folder)`);
    mounts['/model/'] = values.model;
  }
  const port = Number(process.env.PORT ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT=${process.env.PORT}: not a port number`);
  const server = await startStaticServer(mounts, port);
  console.log(`demo page: ${server.url}/`);
  if (values.model !== undefined) console.log(`model folder ${values.model} served at ${server.url}/model/ (the page's default source)`);
  console.log('Ctrl-C stops the server');
}

main().catch((e: Error) => {
  console.error(`serve-web: ${e.message}\n${USAGE}`);
  process.exit(1);
});
