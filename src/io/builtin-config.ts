// The configs and tokenizers a single-file checkpoint runs with when no --config folder is given:
// the real SDXL-Turbo files (src/assets/sdxl/, from test/fixtures/sdxl-turbo-layout) and CLIP's BPE
// merges. They are bundled into the library itself (JSON as modules, merges.txt as text), so the
// Node build, the CLI and the browser bundle have them with no file to locate at run time;
// vocab.json is derived from the merges rather than shipped (clipVocabFromMerges).

import type { ModelFs } from './model-folder.js';
import { clipVocabFromMerges } from '../pipeline/tokenizer.js';
import modelIndex from '../assets/sdxl/model_index.json';
import scheduler from '../assets/sdxl/scheduler/scheduler_config.json';
import textEncoder from '../assets/sdxl/text_encoder/config.json';
import textEncoder2 from '../assets/sdxl/text_encoder_2/config.json';
import tokenizerConfig from '../assets/sdxl/tokenizer/tokenizer_config.json';
import specialTokens from '../assets/sdxl/tokenizer/special_tokens_map.json';
import tokenizer2Config from '../assets/sdxl/tokenizer_2/tokenizer_config.json';
import specialTokens2 from '../assets/sdxl/tokenizer_2/special_tokens_map.json';
import unet from '../assets/sdxl/unet/config.json';
import vae from '../assets/sdxl/vae/config.json';
import merges from '../assets/sdxl/merges.txt';

const JSON_FILES: Readonly<Record<string, unknown>> = {
  'model_index.json': modelIndex,
  'scheduler/scheduler_config.json': scheduler,
  'text_encoder/config.json': textEncoder,
  'text_encoder_2/config.json': textEncoder2,
  'tokenizer/tokenizer_config.json': tokenizerConfig,
  'tokenizer/special_tokens_map.json': specialTokens,
  'tokenizer_2/tokenizer_config.json': tokenizer2Config,
  'tokenizer_2/special_tokens_map.json': specialTokens2,
  'unet/config.json': unet,
  'vae/config.json': vae,
};

let vocab: string | null = null;

/** SDXL-Turbo's diffusers folder without weights, as a ModelFs. */
export function builtinSdxlFs(): ModelFs {
  return {
    description: 'built-in SDXL configs',
    open: async () => null,
    readText: async (path) => {
      // Both tokenizers share CLIP's BPE files.
      if (/^tokenizer(_2)?\/merges\.txt$/.test(path)) return merges;
      if (/^tokenizer(_2)?\/vocab\.json$/.test(path)) return (vocab ??= JSON.stringify(clipVocabFromMerges(merges)));
      const file = JSON_FILES[path];
      return file === undefined ? null : JSON.stringify(file);
    },
  };
}
