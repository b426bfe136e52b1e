// A writable copy of the tiny model folder for fault tests: every file hard-linked (no bytes
// copied; the copy is a real folder, so containment checks see regular files inside it), and
// any file replaced by other contents without touching the fixture.

import { link, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TINY } from '../helpers/fixtures.js';

/** Links every file of TINY into `dir` (created). */
export async function linkTiny(dir: string, from = TINY): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    if (entry.isDirectory()) await linkTiny(join(dir, entry.name), join(from, entry.name));
    else await link(join(from, entry.name), join(dir, entry.name));
  }
  return dir;
}

/** Replaces `path` of the copy (unlinked first: writing through the link would edit the fixture). */
export async function replaceFile(dir: string, path: string, contents: string | Uint8Array): Promise<void> {
  await rm(join(dir, path), { force: true });
  await writeFile(join(dir, path), contents);
}

/** Replaces a JSON file of the copy with TINY's, changed by `edit`. */
export async function editJson(dir: string, path: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const json = JSON.parse(await readFile(join(TINY, path), 'utf8')) as Record<string, unknown>;
  edit(json);
  await replaceFile(dir, path, JSON.stringify(json));
}
