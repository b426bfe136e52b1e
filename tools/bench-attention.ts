// Attention variants side by side (Node): the k16 tiles and sg at head dim 64 on the
// attention shapes of SDXL-Turbo at 512² (UNet self- and cross-attention), its 1024² self-
// attention and the two CLIP encoders' causal self-attention, f16 and f32. Each shape's variants
// are timed in interleaved rounds (`measureCalls`, as `sdxl-turbo tune` does), so their ratios
// come from one sitting even on a noisy machine; the ratio is against d32-k16, the heuristic.
// Correctness is test/ops/attention.test.ts's; this only times.
//   npm run bench:attention -- [--filter TEXT] [--reps N] [--budget S]

import { openNodeGpu } from '../src/gpu/node.js';
import { tunableOp } from '../src/gpu/tuning.js';
import { ATTENTION_VARIANTS, type AttentionVariant, attention } from '../src/ops/attention.js';
import { synthetic } from '../src/ops/synthetic.js';
import { measureCalls } from '../src/pipeline/tune.js';
import { parseToolArgs, parseToolOptions, wholeOption } from './bench-model.js';

const SHAPES = [
  { name: 'unet 1024×1024 10h×64', lq: 1024, lk: 1024, heads: 10, causal: false },
  { name: 'unet 1024×77 10h×64', lq: 1024, lk: 77, heads: 10, causal: false },
  { name: 'unet 256×256 20h×64', lq: 256, lk: 256, heads: 20, causal: false },
  { name: 'unet 256×77 20h×64', lq: 256, lk: 77, heads: 20, causal: false },
  { name: 'unet@1024² 4096×4096 10h×64', lq: 4096, lk: 4096, heads: 10, causal: false },
  { name: 'clip-l 77×77 12h×64 causal', lq: 77, lk: 77, heads: 12, causal: true },
  { name: 'clip-g 77×77 20h×64 causal', lq: 77, lk: 77, heads: 20, causal: true },
];
const D = 64;
const HEURISTIC: AttentionVariant = 'd32-k16';

const USAGE = `npm run bench:attention -- [options]
  --filter TEXT   only the shapes whose name contains TEXT (e.g. clip, 1024×77)
  --reps N        timed rounds per shape at most (default 3)
  --budget S      seconds per shape: rounds stop when spent (default 60)`;

const options = parseToolOptions('bench-attention', USAGE, (argv) => {
  const values = parseToolArgs(argv, {
    filter: { type: 'string' },
    reps: { type: 'string', default: '3' },
    budget: { type: 'string', default: '60' },
    help: { type: 'boolean', short: 'h', default: false },
  });
  return values.help ? null : { filter: values.filter, reps: wholeOption('reps', values.reps, 1), budgetMs: 1000 * wholeOption('budget', values.budget, 1) };
}, process.argv.slice(2));
if (typeof options === 'number') process.exit(options);
const gpu = await openNodeGpu({});
const op = tunableOp('bench-attention', []);
// The k8 tiles (a smaller tile of the same kernels) are left out to keep the run short; the
// sg variant needs subgroups. The 4096-token shapes take minutes each on a CPU adapter.
const variants = ATTENTION_VARIANTS.filter((v) => !v.endsWith('-k8') && (gpu.subgroups || v !== 'sg'));
console.log(`${gpu.adapterName}; subgroups ${gpu.subgroups}; ${new Date().toISOString()}`);
for (const dtype of gpu.f16 ? (['f16', 'f32'] as const) : (['f32'] as const)) {
  for (const s of SHAPES.filter((s) => !options.filter || s.name.includes(options.filter))) {
    const width = s.heads * D;
    const { calls, timer } = await measureCalls(gpu, [{
      count: 1,
      call: {
        op, key: `${dtype} ${s.name}`, label: `${s.name} ${dtype}`, candidates: variants, heuristic: HEURISTIC,
        prepare: (g) => {
          const [q, k, v] = [synthetic(g, 'bench.q', [1, s.lq, width], dtype), synthetic(g, 'bench.k', [1, s.lk, width], dtype), synthetic(g, 'bench.v', [1, s.lk, width], dtype)];
          return {
            run: (variant) => attention(q, k, v, { heads: s.heads, causal: s.causal, variant: variant as AttentionVariant }).release(),
            dispose: () => [q, k, v].forEach((t) => t.release()),
          };
        },
      },
    }], { reps: options.reps, budgetMs: options.budgetMs });
    const { ms, errors, rounds } = calls[0]!;
    const base = ms[HEURISTIC]!;
    const cells = Object.entries(ms).map(([v, t]) => `${v} ${t.toPrecision(3)} ms (${(base / t).toFixed(2)}×)`);
    console.log(`${dtype} ${s.name} [${timer}, ${rounds} rounds]: ${cells.join(', ')}${Object.keys(errors).length ? `; failed: ${JSON.stringify(errors)}` : ''}`);
  }
}
gpu.dispose();
