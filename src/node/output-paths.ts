// Node-only: the CLI's output files, checked before any work (before the model is opened):
// every output distinct from the others and from every input the run reads, and each one's
// folder existing and writable. A clash or an unwritable place is bad input (exit 2).

import { access, constants, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { usage } from '../errors.js';

/** A file the run names: the flag and the path as given. */
export interface NamedPath {
  readonly option: string;
  readonly path: string;
}

interface Identity {
  /** The resolved path, through symlinks of the file and its folders where they exist. */
  readonly real: string;
  /** device:inode of an existing file (hard links to one file are one file). */
  readonly inode: string | null;
}

async function identity(path: string): Promise<Identity> {
  const absolute = resolve(path);
  const info = await stat(absolute).catch(() => null);
  const real = info
    ? await realpath(absolute).catch(() => absolute)
    : join(await realpath(dirname(absolute)).catch(() => dirname(absolute)), basename(absolute));
  return { real, inode: info ? `${info.dev}:${info.ino}` : null };
}

const same = (a: Identity, b: Identity): boolean => a.real === b.real || (a.inode !== null && a.inode === b.inode);

/**
 * Refuses (UsageError) outputs that name one file twice, that name an input (which the run
 * would overwrite), or that cannot be written: a missing or unwritable folder, a directory or
 * something other than a regular file at the path.
 */
export async function checkOutputs(outputs: readonly NamedPath[], inputs: readonly NamedPath[]): Promise<void> {
  const outs = await Promise.all(outputs.map(async (o) => ({ ...o, id: await identity(o.path) })));
  const ins = await Promise.all(inputs.map(async (i) => ({ ...i, id: await identity(i.path) })));
  for (const [k, o] of outs.entries()) {
    const input = ins.find((i) => same(i.id, o.id));
    if (input) usage(`${o.option} ${o.path} is the ${input.option} file ${input.path}: the run would overwrite its input; choose another output`);
    const earlier = outs.slice(0, k).find((p) => same(p.id, o.id));
    if (earlier) usage(`${o.option} ${o.path} is also ${earlier.option} ${earlier.path}: every output needs its own file`);
  }
  for (const o of outputs) await checkWritable(o.option, o.path);
}

/** An output file's folder must exist and be writable before minutes of work go into it. */
export async function checkWritable(option: string, path: string): Promise<void> {
  const dir = dirname(resolve(path));
  const info = await stat(path).catch(() => null);
  if (info?.isDirectory()) usage(`${option} ${path}: is a directory`);
  if (info && !info.isFile()) usage(`${option} ${path}: is not a regular file`);
  if (!(await stat(dir).catch(() => null))?.isDirectory()) usage(`${option} ${path}: no such directory ${dir}`);
  await access(dir, constants.W_OK).catch(() => usage(`${option} ${path}: cannot write to ${dir}`));
}
