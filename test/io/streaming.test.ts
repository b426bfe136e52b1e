// Weights stream from Blobs (what a browser page gets from a picked folder or Cache Storage)
// tensor by tensor: no read asks for more than one tensor or one safetensors header, so no
// whole file is ever one ArrayBuffer (Chrome caps those near 2 GB; SDXL's UNet file is 5 GB).
// Node's openAsBlob gives disk-backed Blobs as a browser's are.

import { openAsBlob, readdirSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadPipeline } from '../../src/index.js';
import { blobReader } from '../../src/io/blob-reader.js';
import { filesModelFs, type ModelFs } from '../../src/io/model-folder.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { TINY } from '../helpers/fixtures.js';

describe('loading from Blobs', () => {
  it('reads each weight file one tensor (or its header) at a time', async () => {
    const files = new Map<string, Blob>();
    for (const dir of readdirSync(TINY)) {
      const path = `${TINY}/${dir}`;
      if (statSync(path).isDirectory()) for (const name of readdirSync(path)) files.set(`${dir}/${name}`, await openAsBlob(`${path}/${name}`));
      else files.set(dir, await openAsBlob(path));
    }
    const folder = filesModelFs(files, 'tiny-sdxl (Blobs)');
    const largestRead = new Map<string, number>();
    const counted: ModelFs = {
      ...folder,
      open: async (path) => {
        const reader = await folder.open(path);
        if (!reader) return null;
        return { ...reader, read: (offset, length) => (largestRead.set(path, Math.max(largestRead.get(path) ?? 0, length)), reader.read(offset, length)) };
      },
    };
    const pipeline = await loadPipeline(counted, { variant: 'fp32', dtype: 'f32' });
    await pipeline.dispose();
    const weightFiles = [...largestRead.keys()].filter((p) => p.endsWith('.safetensors'));
    expect(weightFiles).toHaveLength(4);
    for (const path of weightFiles) {
      const blob = files.get(path)!;
      const file = await SafetensorsFile.open(blobReader(blob, path));
      const header = Number(new DataView(await blob.slice(0, 8).arrayBuffer()).getBigUint64(0, true));
      const largestTensor = Math.max(...[...file.raw.values()].map((e) => e.end - e.begin));
      expect(largestRead.get(path), path).toBe(Math.max(largestTensor, header));
      expect(largestRead.get(path)!, path).toBeLessThan(blob.size);
    }
  });
});
