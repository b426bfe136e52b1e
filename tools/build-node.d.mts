// Types of tools/build-node.mjs for the TypeScript that imports it (the CLI tests).

export function buildNode(outdir?: string, entries?: string[]): Promise<void>;
