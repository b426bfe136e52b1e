// Node-only: what loadPipeline(source) / `--model` may name — a diffusers folder on disk, a
// base URL served over HTTP(S), or a Hugging Face repo id (downloaded into the HF cache).

import { stat } from 'node:fs/promises';
import { usage } from '../errors.js';
import type { ModelFs } from '../io/model-folder.js';
import { isRepoId, urlModelFs } from '../io/model-folder.js';
import { nodeModelFs } from '../io/node-file.js';
import { type DownloadOptions, downloadSnapshot } from './hub.js';

export async function openModel(spec: string, options: DownloadOptions = {}): Promise<ModelFs> {
  if (/^https?:\/\//.test(spec)) return urlModelFs(spec);
  const info = await stat(spec).catch(() => null);
  if (info?.isDirectory()) return nodeModelFs(spec);
  if (info) usage(`model ${spec}: is a file, expected a diffusers model folder`, 'model');
  if (isRepoId(spec)) return nodeModelFs(await downloadSnapshot(spec, options));
  usage(`model ${spec}: no such folder, and not a Hugging Face repo id (org/name) or URL`, 'model');
}
