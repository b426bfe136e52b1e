// Node-only: what loadPipeline(source) / `--model` may name — a diffusers folder on disk, a
// base URL served over HTTP(S), a Hugging Face repo id (downloaded into the HF cache), or a
// single-file checkpoint: a .safetensors path, its http(s) URL (read with Range requests) or a
// hub file org/name/FILE.safetensors (downloaded into the HF cache). The `config` option (a
// folder or base URL) gives a single file its configs and tokenizers.

import { stat } from 'node:fs/promises';
import { usage } from '../errors.js';
import { builtinSdxlFs } from '../io/builtin-config.js';
import type { ModelFs } from '../io/model-folder.js';
import { isRepoId, parseHubFile, urlModelFs } from '../io/model-folder.js';
import { nodeModelFs, openFileReader } from '../io/node-file.js';
import { openUrlReader } from '../io/url-reader.js';
import type { OpenedModel } from '../load.js';
import { type DownloadOptions, downloadHubFile, downloadSnapshot, isOffline } from './hub.js';

const URL_PATTERN = /^https?:\/\//;

/** HF_HUB_OFFLINE set: no request at all, as huggingface_hub has it (repo ids use the cache). */
function checkOnline(url: string, option: string): void {
  if (isOffline()) usage(`${option} ${url}: HF_HUB_OFFLINE is set, so nothing is fetched over the network; unset it or use a local folder`, option);
}

export async function openModel(spec: string, options: DownloadOptions = {}): Promise<OpenedModel> {
  if (URL_PATTERN.test(spec)) {
    checkOnline(spec, 'model');
    return new URL(spec).pathname.endsWith('.safetensors') ? { checkpoint: await openUrlReader(spec) } : urlModelFs(spec);
  }
  const info = await stat(spec).catch(() => null);
  if (info?.isDirectory()) return nodeModelFs(spec);
  if (info) return { checkpoint: await openFileReader(spec) };
  const hubFile = parseHubFile(spec);
  if (hubFile) return { checkpoint: await openFileReader(await downloadHubFile(hubFile.repoId, hubFile.path, options)) };
  if (isRepoId(spec)) return nodeModelFs(await downloadSnapshot(spec, options));
  usage(`model ${spec}: no such folder or file, and not a Hugging Face repo id (org/name), hub file (org/name/FILE.safetensors) or URL`, 'model');
}

/** The `vae` option as a string: a vae folder or a .safetensors file, on disk or at a URL. */
export async function openVaePath(spec: string): Promise<OpenedModel> {
  if (URL_PATTERN.test(spec)) return new URL(spec).pathname.endsWith('.safetensors') ? { checkpoint: await openUrlReader(spec) } : urlModelFs(spec);
  const info = await stat(spec).catch(() => null);
  if (info?.isDirectory()) return nodeModelFs(spec);
  if (info) return { checkpoint: await openFileReader(spec) };
  usage(`vae ${spec}: no such folder or file (a diffusers vae folder, or one .safetensors file)`, 'vae');
}

/** The `config` option: a diffusers folder on disk or its base URL. */
export async function openConfig(spec: string): Promise<ModelFs> {
  if (URL_PATTERN.test(spec)) {
    checkOnline(spec, 'config');
    return urlModelFs(spec);
  }
  if (!(await stat(spec).catch(() => null))?.isDirectory()) usage(`config ${spec}: not a folder (a diffusers model folder whose configs and tokenizers a single file runs with)`, 'config');
  return nodeModelFs(spec);
}

/** Where `sdxl-turbo tokenize` finds the tokenizers (and `tune` the configs): `config`, else the built-in ones for a
 *  single file (not read, nor downloaded, for this), else the model folder. */
export async function tokenizerFiles(spec: string, config: string | undefined, options: DownloadOptions = {}): Promise<ModelFs> {
  if (config !== undefined) return openConfig(config);
  if (/\.safetensors$/i.test(URL_PATTERN.test(spec) ? new URL(spec).pathname : spec)) return builtinSdxlFs();
  const opened = await openModel(spec, options);
  if (!('checkpoint' in opened)) return opened;
  await opened.checkpoint.close?.();
  return builtinSdxlFs();
}
