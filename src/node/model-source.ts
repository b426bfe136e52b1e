// Node-only: what `--model` / loadPipeline(source) may name — a diffusers folder on disk, a
// base URL served over HTTP(S), or a Hugging Face repo id (downloaded into the HF cache).

import { stat } from 'node:fs/promises';
import { usage } from '../errors.js';
import type { ModelFs } from '../io/model-folder.js';
import { isRepoId, urlModelFs } from '../io/model-folder.js';
import { nodeModelFs } from '../io/node-file.js';
import type { WeightVariant } from '../pipeline/options.js';
import { downloadSnapshot, type DownloadProgress } from './hub.js';

export interface OpenModelOptions {
  readonly variant?: WeightVariant;
  readonly onDownload?: (e: DownloadProgress) => void;
}

export async function openModel(spec: string, options: OpenModelOptions = {}): Promise<ModelFs> {
  if (/^https?:\/\//.test(spec)) return urlModelFs(spec);
  const info = await stat(spec).catch(() => null);
  if (info?.isDirectory()) return nodeModelFs(spec);
  if (info) usage(`--model ${spec}: is a file, expected a diffusers model folder`);
  if (isRepoId(spec)) return nodeModelFs(await downloadSnapshot(spec, options));
  usage(`--model ${spec}: no such folder, and not a Hugging Face repo id (org/name) or URL`);
}
