// Builds the Node library + CLI + tools (dist/, see tools/build-node.mjs), the browser bundle
// (dist/browser/) and the demo page (dist/web/, see tools/build-web.mjs).
// WGSL kernels are inlined as text in both.
import { buildNode } from './build-node.mjs';
import { buildWeb } from './build-web.mjs';

await buildNode();
await buildWeb();
