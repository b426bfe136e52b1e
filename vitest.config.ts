import { readFileSync } from 'node:fs';
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
  },
});
