// Types of tools/build-web.mjs for the TypeScript that imports it (the browser tests).
import type { BuildOptions } from 'esbuild';

export function buildBrowserBundle(options: BuildOptions & { outfile: string }): Promise<void>;
export function buildWeb(outdir?: string): Promise<void>;
