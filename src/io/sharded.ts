// Checkpoints split over several files: diffusers/transformers write
// `<name>.safetensors.index.json` = {"metadata": {...}, "weight_map": {tensor: shard file}}
// beside the shards. They are read as one TensorSource.

import { excerpt } from '../errors.js';
import type { ByteReader } from './byte-reader.js';
import { refuseInt8 } from './q8-source.js';
import { SafetensorsFile } from './safetensors.js';
import type { HostTensor, TensorEntry, TensorSource } from './tensor-source.js';

/** Several sources as one; a tensor name held by two of them is an error. */
export class MergedSource implements TensorSource {
  readonly entries: ReadonlyMap<string, TensorEntry>;
  private readonly owners = new Map<string, TensorSource>();

  constructor(readonly description: string, private readonly parts: readonly TensorSource[]) {
    const entries = new Map<string, TensorEntry>();
    for (const part of parts) {
      for (const [name, entry] of part.entries) {
        const other = this.owners.get(name);
        if (other) throw new Error(`${description}: tensor ${name} is in both ${other.description} and ${part.description}`);
        this.owners.set(name, part);
        entries.set(name, entry);
      }
    }
    this.entries = entries;
  }

  read(name: string): Promise<HostTensor> {
    const owner = this.owners.get(name);
    if (!owner) return Promise.reject(new Error(`${this.description}: no tensor named ${name}`));
    return owner.read(name);
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.close?.()));
  }
}

/**
 * Opens every shard an index names (`openShard` gets the file name as written in the index,
 * relative to the index's folder) and checks each tensor is in the shard the index says.
 * `description` names the index file in messages.
 */
export async function openShardedSafetensors(
  indexText: string,
  description: string,
  openShard: (file: string) => Promise<ByteReader>,
): Promise<MergedSource> {
  const fail: (msg: string) => never = (msg) => {
    throw new Error(`${description}: invalid shard index: ${msg}`);
  };
  let index: unknown;
  try {
    index = JSON.parse(indexText);
  } catch (e) {
    fail(`not valid JSON (${excerpt((e as Error).message, 100)})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) fail('no "weight_map" object');
  const byShard = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '' || file.includes('/') || file.includes('\\') || file === '..') {
      fail(`tensor ${excerpt(name)}: shard ${excerpt(JSON.stringify(file) ?? String(file))} is not a file name beside the index`);
    }
    const names = byShard.get(file as string) ?? [];
    names.push(name);
    byShard.set(file as string, names);
  }
  if (byShard.size === 0) fail('"weight_map" is empty');

  const shards: SafetensorsFile[] = [];
  try {
    for (const [file, names] of byShard) {
      const shard = await SafetensorsFile.open(await openShard(file));
      shards.push(shard);
      refuseInt8(shard, `the config.json beside ${description}`); // 8-bit weights are never sharded
      const absent = names.filter((n) => !shard.raw.has(n));
      if (absent.length > 0) fail(`${absent.length} tensor(s) the index puts in ${file} are not there: ${absent.slice(0, 5).join(', ')}${absent.length > 5 ? ', …' : ''}`);
    }
    return new MergedSource(description, shards);
  } catch (e) {
    await Promise.all(shards.map((s) => s.close()));
    throw e;
  }
}
