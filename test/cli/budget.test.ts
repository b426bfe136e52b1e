// --max-memory and --vae on the command line: a size with a suffix or a clear error naming the
// flag; a budget no plan fits is refused on one line naming the plan (before any weight loads);
// a --vae that is not there, or not an SDXL VAE, names the flag and the file.

import { describe, it } from 'vitest';
import { TINY } from '../helpers/fixtures.js';
import { expectUsageError, runMain } from './run.js';

const base = ['generate', '--model', TINY, '--prompt', 'a cat', '--width', '128', '--height', '128', '--out', 'test-output/budget-cli.png'];

describe('--max-memory and --vae', () => {
  it('refuses a size it cannot read', async () => {
    expectUsageError(await runMain([...base, '--max-memory', '6 GBs']), '--max-memory must be a size in bytes', 'e.g. 6GB or 512MiB; got "6 GBs"');
  });

  it('refuses a budget no plan fits, naming the plan', async () => {
    expectUsageError(
      await runMain([...base, '--max-memory', '5MB']),
      /^sdxl-turbo: --max-memory 5\.0 MB cannot hold a 128×128 run: the leanest plan \(text encoders released after encoding and the UNet while they run\) needs load \S+ MB, encode-prompt /,
      /unet [\d.]+ MB \+ [\d.]+ kB/,
    );
  });

  it('names a --vae that is not there', async () => {
    expectUsageError(await runMain([...base, '--vae', 'test-output/no-such-vae']), '--vae test-output/no-such-vae: no such folder or file');
  });
});
