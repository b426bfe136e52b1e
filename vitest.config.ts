import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [
    {
      name: 'wgsl-and-txt-as-text',
      transform(_code: string, id: string) {
        if (!id.endsWith('.wgsl') && !id.endsWith('.txt')) return null;
        return { code: `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`, map: null };
      },
    },
  ],
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // lavapipe already uses every core; parallel files only contend.
    fileParallelism: false,
    // No tuning table of this machine's user (sdxl-turbo tune) changes which variants tests run;
    // tests that use one name their own folder.
    env: { SDXL_TURBO_TUNING_DIR: join(tmpdir(), 'sdxl-turbo-tests-no-tuning-table') },
  },
});
