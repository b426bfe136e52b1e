// Node-only: tuning tables as JSON files, one per adapter, in
// `${SDXL_TURBO_TUNING_DIR}` or else `${XDG_CACHE_HOME:-~/.cache}/sdxl-turbo/tuning/`, named by
// the adapter's hash (tuning-table.ts); written atomically, so a run that dies mid-write leaves
// the old table.

import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type AdapterIdentity, adapterHash, type TuningStore } from '../gpu/tuning-table.js';
import { writeFilesAtomic } from './atomic-write.js';

/** The folder of the tables: `dir`, else $SDXL_TURBO_TUNING_DIR, else the user cache folder's. */
export function tuningDir(dir?: string): string {
  if (dir !== undefined) return dir;
  const env = process.env.SDXL_TURBO_TUNING_DIR;
  if (env) return env;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'sdxl-turbo', 'tuning');
}

export function nodeTuningStore(dir?: string): TuningStore {
  const folder = tuningDir(dir);
  const path = (adapter: AdapterIdentity): string => join(folder, `${adapterHash(adapter)}.json`);
  return {
    where: path,
    read: async (adapter) => {
      try {
        return await readFile(path(adapter), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
    },
    write: async (adapter, text) => {
      await mkdir(folder, { recursive: true });
      await writeFilesAtomic([{ path: path(adapter), data: new TextEncoder().encode(text) }]);
    },
  };
}
