// `npm run bench:subgroup-matrix`: the GPU check of the subgroup-matrix (tensor-core) matmul.
// Opens the adapter with GpuOptions.subgroupMatrix, prints the guard's report (configs fitted,
// self-check passed or why not), then per dtype that passed times the variant against the
// tiled kernel's tiles on the UNet's plain Linear and attention shapes at 512² (64² latents),
// checking each output against the tiled one. Run on any GPU box (the GPU bundle's run.sh runs
// it); on lavapipe it reports "off" and times nothing, unless --emulate (a smoke test of this
// tool: the emulated kernel, whose timings mean nothing).

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openNodeGpu } from '../src/gpu/node.js';
import type { WebGpuRuntime } from '../src/gpu/runtime.js';
import { synthetic } from '../src/ops/synthetic.js';
import { linear, type MatmulVariant, matmul } from '../src/ops/matmul.js';
import { planTiles, SUBGROUP_MATRIX_VARIANT, type SubgroupMatrixPlan } from '../src/ops/matmul-subgroup-matrix.js';
import { maxRelative, SELF_CHECK_TOLERANCE } from '../src/ops/subgroup-matrix-check.js';
import type { DType, Tensor } from '../src/tensor.js';

const HELP = `bench:subgroup-matrix [--small] [--reps N] [--markdown FILE] [--emulate]
  --small       two small shapes (a quick check)
  --reps N      timed calls per variant and shape (default 10)
  --markdown F  also write the table and the guard's report to F
  --emulate     run the emulated kernel on any adapter (tests this tool; timings meaningless)`;

/** [label, m, k, n, batch, transposeB]: Linear (x · Wᵀ, batch 1) or batched matmul. */
type Shape = readonly [string, number, number, number, number, boolean];
// SDXL UNet at 512²: 4096 tokens × 640 (down/up block 1), 1024 × 1280 (block 2); attention
// scores and values of 10 heads × 64 on 4096 tokens; the plain Linear calls (GEGLU's is fused).
const SHAPES: readonly Shape[] = [
  ['attn q/k/v/out 4096×640→640', 4096, 640, 640, 1, true],
  ['ff out 4096×2560→640', 4096, 2560, 640, 1, true],
  ['attn q/k/v/out 1024×1280→1280', 1024, 1280, 1280, 1, true],
  ['ff out 1024×5120→1280', 1024, 5120, 1280, 1, true],
  ['cross-attn k/v 77×2048→1280', 77, 2048, 1280, 1, true],
  ['attn scores 10×4096×64·64×4096', 4096, 64, 4096, 10, true],
  ['attn values 10×4096×4096·4096×64', 4096, 4096, 64, 10, false],
];
const SMALL: readonly Shape[] = [
  ['linear 200×96→72', 200, 96, 72, 1, true],
  ['matmul 3×70×40·40×50', 70, 40, 50, 3, false],
];
const TILES: readonly MatmulVariant[] = ['small', 'medium', 'large'];

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { small: { type: 'boolean' }, reps: { type: 'string' }, markdown: { type: 'string' }, emulate: { type: 'boolean' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const reps = values.reps === undefined ? 10 : Number(values.reps);
  if (!(Number.isInteger(reps) && reps > 0)) throw new Error(`--reps must be a positive integer, got ${values.reps}`);
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const gpu: WebGpuRuntime = await openNodeGpu({ profile: true, subgroupMatrix: true });
  try {
    if (values.emulate) emulate(gpu);
    const { offered, report } = gpu.subgroupMatrix!;
    const configs = offered.map((c) => `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`).join(', ') || 'none';
    const lines = [`adapter: ${gpu.adapterName}`, `configs offered: ${configs}`, `timer: ${gpu.profiler ? 'GPU timestamps' : 'wall clock'}; ${reps} calls per variant and shape`, ...report];
    for (const line of lines) console.log(line);
    if (Object.keys(gpu.subgroupMatrix!.plans).length === 0) console.log('nothing timed: no dtype passed the guard');
    const rows = ['| dtype | shape | tile | ms (best tile) | subgroup-matrix ms | speed-up | TFLOP/s | max error |', '|---|---|---|---|---|---|---|---|'];
    let failed = false;
    for (const [dtype, plan] of Object.entries(gpu.subgroupMatrix!.plans) as Array<[DType, SubgroupMatrixPlan]>) {
      for (const shape of values.small ? SMALL : SHAPES) {
        const row = await compare(gpu, dtype, shape, reps);
        failed ||= !(row.error <= SELF_CHECK_TOLERANCE[dtype]);
        const flops = 2 * shape[1] * shape[2] * shape[3] * shape[4];
        const line = `| ${dtype} | ${shape[0]} | ${row.tile} | ${row.tiledMs.toFixed(3)} | ${row.smxMs.toFixed(3)} | ${(row.tiledMs / row.smxMs).toFixed(2)}× | ${(flops / (row.smxMs * 1e9)).toFixed(2)} | ${row.error.toExponential(1)} |`;
        console.log(line);
        rows.push(line);
      }
      const { tileM, tileN, tileK } = planTiles(plan);
      lines.push(`${dtype}: ${plan.config.componentType}→f32 ${plan.config.M}×${plan.config.N}×${plan.config.K}, tile ${tileM}×${tileN}×${tileK}${plan.emulated ? ' (EMULATED: timings meaningless)' : ''}`);
    }
    if (rows.length === 2) lines.push('nothing timed: no dtype passed the guard');
    if (values.markdown) writeFileSync(values.markdown, `# subgroup-matrix matmul\n\n${lines.map((l) => `- ${l}`).join('\n')}\n\n${rows.join('\n')}\n`);
    return failed ? 1 : 0;
  } finally {
    gpu.dispose();
  }
}

/** --emulate: the emulated kernel's plans (8×8×8 f32 inputs, as Apple's), self-check skipped. */
function emulate(gpu: WebGpuRuntime): void {
  const plan = (dtype: DType): SubgroupMatrixPlan => ({ dtype, config: { componentType: 'f32', resultComponentType: 'f32', M: 8, N: 8, K: 8 }, subgroupSize: 8, rows: 2, cols: 2, steps: 2, emulated: true });
  gpu.subgroupMatrix = { offered: [], plans: gpu.f16 ? { f16: plan('f16'), f32: plan('f32') } : { f32: plan('f32') }, report: ['--emulate: emulated plans, no self-check'] };
}

/** GPU milliseconds per call of `run` over `reps` calls after a warm-up (wall clock without
 *  timestamps), and the last output. */
async function time(gpu: WebGpuRuntime, run: () => Tensor, reps: number): Promise<{ ms: number; out: Tensor }> {
  run().release();
  await gpu.sync();
  gpu.profiler?.reset();
  const started = performance.now();
  let out = run();
  for (let i = 1; i < reps; i++) {
    out.release();
    out = run();
  }
  await gpu.sync();
  const wall = performance.now() - started;
  const timings = gpu.profiler ? await gpu.profiler.report() : null;
  return { ms: (timings ? timings.reduce((s, t) => s + t.totalMs, 0) : wall) / reps, out };
}

async function compare(gpu: WebGpuRuntime, dtype: DType, [label, m, k, n, batch, transposeB]: Shape, reps: number) {
  const a = synthetic(gpu, `smx.${label}.a`, batch === 1 ? [m, k] : [batch, m, k], dtype);
  const b = synthetic(gpu, `smx.${label}.b`, batch === 1 ? [n, k] : transposeB ? [batch, n, k] : [batch, k, n], dtype);
  const run = (variant: MatmulVariant) => () => (batch === 1 ? linear(a, b, null, { variant }) : matmul(a, b, { transposeB, variant }));
  let best: { tile: MatmulVariant; ms: number; out: Tensor } | null = null;
  for (const tile of TILES) {
    const t = await time(gpu, run(tile), reps);
    if (!best || t.ms < best.ms) {
      best?.out.release();
      best = { tile, ...t };
    } else {
      t.out.release();
    }
  }
  const smx = await time(gpu, run(SUBGROUP_MATRIX_VARIANT), reps);
  const error = maxRelative(await smx.out.read(), await best!.out.read());
  for (const t of [a, b, smx.out, best!.out]) t.release();
  return { tile: best!.tile, tiledMs: best!.ms, smxMs: smx.ms, error };
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`bench:subgroup-matrix: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
