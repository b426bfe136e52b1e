// Real-size parity (Node): the real SDXL-Turbo networks, built from the real configs
// (test/fixtures/sdxl-turbo-layout) and filled with the synthetic weights of
// test/fixtures/real-size-synthetic/SPEC.md, against what diffusers computed with the same
// weights (real-size-synthetic/reference.safetensors). Every stored tensor, hooks included,
// is compared; a network's weights are generated tensor by tensor while they upload and are
// released before the next network loads, so the GPU holds one network at a time.
// `npm run parity:real-size -- --help` lists the options. Too slow for `npm test` on lavapipe.
//
// Acceptance: f32 runs use the fixture README's bar, |Δ| ≤ 1e-3·max(1, |ref|) for every element
// (3–9× the float32 reference's own deviation from a float64 recomputation). f16 activations
// are not covered by that figure: f16 runs must reach a relative L2 ≤ 1e-2 (about 20 roundings
// of 2^-11 adding up; the tiny fixture's f16 UNet reaches 1.5e-3). Token ids must be exact.
// --weights q8 stores the text encoders' and UNet's Linear and conv weights 8-bit (docs/Q8.md):
// their figures then measure the quantization against diffusers' float run, and the bar is a
// relative L2 ≤ 5e-2 (each weight rounded by ≈0.5%, accumulated over the network's depth).

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openNodeGpu } from '../src/gpu/node.js';
import type { Gpu } from '../src/gpu/runtime.js';
import { imageToTensorData } from '../src/image.js';
import { openFileReader } from '../src/io/node-file.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { SyntheticSource } from '../src/io/synthetic.js';
import { SyntheticGpuSource } from '../src/io/synthetic-gpu.js';
import { TimedSource } from '../src/io/timed-source.js';
import { CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig } from '../src/models/clip.js';
import { parseUNetConfig, UNet2DConditionModel } from '../src/models/unet.js';
import { AutoencoderKL, parseVaeConfig } from '../src/models/vae.js';
import type { WeightRegistry } from '../src/models/weights.js';
import { uploadAs } from '../src/ops/cast.js';
import { concat } from '../src/ops/concat.js';
import { q8Bytes } from '../src/ops/quantize.js';
import { CLIPTokenizer } from '../src/pipeline/tokenizer.js';
import { type DType, formatShape, storageBytes, Tensor } from '../src/tensor.js';

const LAYOUT = 'test/fixtures/sdxl-turbo-layout';
const SYNTHETIC = 'test/fixtures/real-size-synthetic';
const TOKENIZERS = 'test/fixtures/tiny-sdxl'; // the real CLIP vocabulary and both pad settings

const CASES = ['te1', 'te2', 'unet', 'unet2', 'decode', 'encode'] as const;
type CaseName = (typeof CASES)[number];

const USAGE = `npm run parity:real-size -- [options]
  --dtype f32|f16|both   storage dtype of the text encoders and the UNet (default both where the
                         adapter has shader-f16, else f32); the VAE always runs in f32, as the
                         pipeline runs it (force_upcast)
  --only LIST            comma-separated cases out of ${CASES.join(',')} (default all)
  --cpu-synthetic        generate the synthetic weights on the CPU and upload them (default: on
                         the GPU, where they land; the same bits)
  --weights q8           8-bit Linear and conv weights in the text encoders and UNet, quantized
                         on the GPU as they load (the VAE stays f32)
Run from the repository root. Exit code 1 if any compared tensor misses its bar, 2 on bad options.`;

const F32_BAR = 1e-3; // max |Δ| / max(1, |ref|), per element
const F16_BAR = 1e-2; // relative L2
const Q8_BAR = 5e-2; // relative L2, 8-bit weights (see the header)
/** Uploads in flight before the loader waits for the GPU: bounds queued staging copies. */

// ---- reference data -------------------------------------------------------------------------

interface Ref {
  readonly shape: readonly number[];
  /** Float tensors as float32, integer ones (ids, uint8 pixels) as exact numbers. */
  readonly data: Float32Array;
}

async function readReference(path: string): Promise<Map<string, Ref>> {
  const file = await SafetensorsFile.open(await openFileReader(path));
  const out = new Map<string, Ref>();
  try {
    for (const [name, entry] of file.raw) {
      const buffer = (await file.readBytes(name)).bytes.slice().buffer;
      const data =
        entry.dtype === 'F32' ? new Float32Array(buffer)
        : entry.dtype === 'I64' ? Float32Array.from(new BigInt64Array(buffer), Number)
        : entry.dtype === 'U8' ? Float32Array.from(new Uint8Array(buffer))
        : null;
      if (!data) throw new Error(`${path}: ${name} has unexpected dtype ${entry.dtype}`);
      out.set(name, { shape: entry.shape, data });
    }
  } finally {
    await file.close();
  }
  return out;
}

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

// ---- comparison -----------------------------------------------------------------------------

interface Row {
  readonly name: string;
  readonly shape: string;
  readonly relL2: number;
  /** max over elements of |Δ| / max(1, |ref|). */
  readonly maxRel: number;
  readonly maxRef: number;
  readonly pass: boolean;
  /** Shown instead of the numbers (token ids, tensors that never appeared). */
  readonly note?: string;
}

function compare(name: string, actual: Float32Array, expected: Ref, dtype: DType): Row {
  const shape = formatShape(expected.shape);
  if (actual.length !== expected.data.length) {
    return { name, shape, relL2: NaN, maxRel: NaN, maxRef: NaN, pass: false, note: `${actual.length} values` };
  }
  let num = 0;
  let den = 0;
  let maxRel = 0;
  let maxRef = 0;
  let nonFinite = 0;
  for (let i = 0; i < actual.length; i++) {
    const [a, e] = [actual[i]!, expected.data[i]!];
    if (!Number.isFinite(a)) nonFinite++;
    const d = Math.abs(a - e);
    num += d * d;
    den += e * e;
    maxRel = Math.max(maxRel, d / Math.max(1, Math.abs(e)));
    maxRef = Math.max(maxRef, Math.abs(e));
  }
  if (nonFinite > 0) return { name, shape, relL2: NaN, maxRel: NaN, maxRef, pass: false, note: `${nonFinite} non-finite values` };
  const relL2 = Math.sqrt(num / Math.max(den, 1e-30));
  const pass = dtype === 'f32' ? maxRel <= F32_BAR : relL2 <= F16_BAR;
  return { name, shape, relL2, maxRel, maxRef, pass };
}

/** Exact equality of token ids (the pipeline's tokenizer against the reference's ids). */
function compareIds(name: string, actual: Int32Array, expected: Ref): Row {
  const mismatches = expected.data.filter((v, i) => v !== actual[i]).length + Math.abs(actual.length - expected.data.length);
  const note = mismatches === 0 ? 'ids exact' : `${mismatches} ids differ`;
  return { name, shape: formatShape(expected.shape), relL2: NaN, maxRel: NaN, maxRef: NaN, pass: mismatches === 0, note };
}

const fmt = (x: number): string => (Number.isNaN(x) ? 'NaN' : x.toExponential(2));

function printRows(rows: readonly Row[]): void {
  const width = Math.max(...rows.map((r) => r.name.length));
  console.log(`  ${'tensor'.padEnd(width)}  ${'shape'.padEnd(18)} ${'rel L2'.padStart(9)} ${'max|Δ|/max(1,|ref|)'.padStart(20)} ${'max|ref|'.padStart(9)}`);
  for (const r of rows) {
    const numbers = r.note ?? `${fmt(r.relL2).padStart(9)} ${fmt(r.maxRel).padStart(20)} ${fmt(r.maxRef).padStart(9)}`;
    console.log(`  ${r.name.padEnd(width)}  ${r.shape.padEnd(18)} ${numbers.padEnd(40)}  ${r.pass ? 'pass' : 'FAIL'}`);
  }
}

// ---- loading --------------------------------------------------------------------------------

interface Loaded {
  readonly seconds: number;
  /** CPU generation (--cpu-synthetic), else null: made on the GPU, within `seconds`. */
  readonly generateSeconds: number | null;
  readonly weightBytes: number;
}

async function load(gpu: Gpu, registry: WeightRegistry, manifest: unknown, component: string, dtype: DType, cpu: boolean, quantize: boolean): Promise<Loaded> {
  const start = performance.now();
  const source = cpu ? new TimedSource(SyntheticSource.fromManifest(manifest, component)) : SyntheticGpuSource.fromManifest(manifest, component);
  await registry.load(gpu, source, dtype, { quantize });
  await gpu.sync();
  const weightBytes = [...registry.weights.values()].reduce((sum, w) => sum + (quantize && w.quantizable ? q8Bytes(w.shape) : storageBytes(w.shape, dtype)), 0);
  return { seconds: (performance.now() - start) / 1000, generateSeconds: source instanceof TimedSource ? source.readSeconds : null, weightBytes };
}

// ---- the networks ---------------------------------------------------------------------------

/** One case: a row per compared tensor, its forward time (reads included) and pool peak. */
interface CaseResult {
  readonly name: CaseName;
  readonly rows: Row[];
  readonly seconds: number;
  /** Pool peak during the case (activations, inputs included). */
  readonly peakBytes: number;
}

interface NetworkResult {
  readonly network: string;
  readonly dtype: DType;
  /** 8-bit Linear and conv weights. */
  readonly q8: boolean;
  readonly load: Loaded;
  /** Pool peak during load (staging copies of the f16→f32 cast). */
  readonly loadPeakBytes: number;
  readonly cases: CaseResult[];
}

class Runner {
  readonly results: NetworkResult[] = [];
  /** te1's penultimate state per dtype, kept for prompt_embeds = concat(te1, te2). */
  private readonly te1Penultimate = new Map<DType, Tensor>();
  private readonly manifest = readJson(`${LAYOUT}/weights-manifest.json`);

  constructor(
    private readonly gpu: Gpu,
    private readonly ref: Map<string, Ref>,
    private readonly only: ReadonlySet<CaseName>,
    private readonly cpuSynthetic: boolean,
    /** --weights q8 (the VAE stays f32). */
    private readonly q8: boolean,
  ) {}

  private get(name: string): Ref {
    const t = this.ref.get(name);
    if (!t) throw new Error(`${SYNTHETIC}/reference.safetensors has no tensor ${name}`);
    return t;
  }

  private upload(name: string, dtype: DType, data = this.get(name).data): Tensor {
    return uploadAs(this.gpu, data, 'f32', this.get(name).shape, dtype, { label: name });
  }

  /** Loads one network, runs its selected cases (each timed, with its own pool peak), releases it. */
  private async network(
    network: string,
    component: string,
    dtype: DType,
    registry: WeightRegistry,
    cases: ReadonlyArray<readonly [CaseName, () => Promise<Row[]>]>,
  ): Promise<void> {
    const selected = cases.filter(([name]) => this.only.has(name));
    if (selected.length === 0) return;
    const q8 = this.q8 && component !== 'vae';
    console.log(`\n== ${network} (${component}) in ${dtype}${q8 ? ', 8-bit weights' : ''}: loading the synthetic weights …`);
    this.resetPeak();
    const loaded = await load(this.gpu, registry, this.manifest, component, dtype, this.cpuSynthetic, q8);
    const loadPeakBytes = this.gpu.pool.peakBytes;
    const how = loaded.generateSeconds === null ? 'generated on the GPU' : `CPU generation ${loaded.generateSeconds.toFixed(1)} s`;
    console.log(`   loaded ${gb(loaded.weightBytes)} in ${loaded.seconds.toFixed(1)} s (${how})`);
    const results: CaseResult[] = [];
    try {
      for (const [name, run] of selected) {
        this.gpu.trimPool();
        this.resetPeak();
        const start = performance.now();
        // 8-bit weights: the float tensors' bar is Q8_BAR (ids stay exact).
        const rows = (await run()).map((r) => (q8 && r.note === undefined ? { ...r, pass: r.relL2 <= Q8_BAR } : r));
        const seconds = (performance.now() - start) / 1000;
        const peakBytes = this.gpu.pool.peakBytes;
        console.log(`-- ${name} (${dtype}): forward ${seconds.toFixed(1)} s, activation peak ${mb(peakBytes)}`);
        printRows(rows);
        results.push({ name, rows, seconds, peakBytes });
      }
    } finally {
      registry.release();
      this.gpu.trimPool();
      await this.gpu.releaseIdleMemory();
    }
    console.log(`   released; process RSS ${gb(process.memoryUsage().rss)}`);
    this.results.push({ network, dtype, q8, load: loaded, loadPeakBytes, cases: results });
  }

  private resetPeak(): void {
    const { liveBytes, pooledBytes } = this.gpu.pool.stats;
    this.gpu.pool.peakBytes = liveBytes + pooledBytes;
  }

  async te1(dtype: DType): Promise<void> {
    const config = parseCLIPTextConfig(readJson(`${LAYOUT}/text_encoder/config.json`), 'text_encoder/config.json');
    const model = CLIPTextModel.create(config);
    await this.network('CLIPTextModel', 'text_encoder', dtype, model.registry, [
      ['te1', async () => {
        const ids = this.ids('te1', 'tokenizer');
        const out = model.forward(ids.ids, { outputHiddenStates: true });
        const rows = [
          ids.row,
          compare('te1.embeddings', await out.hiddenStates![0]!.read(), this.get('te1.embeddings'), dtype),
          compare('te1.hidden_states_penultimate', await out.penultimate.read(), this.get('te1.hidden_states_penultimate'), dtype),
        ];
        this.te1Penultimate.get(dtype)?.release();
        this.te1Penultimate.set(dtype, out.penultimate);
        for (const t of [...out.hiddenStates!, out.lastHiddenState, out.pooled]) if (t !== out.penultimate) t.release();
        return rows;
      }],
    ]);
  }

  async te2(dtype: DType): Promise<void> {
    const config = parseCLIPTextConfig(readJson(`${LAYOUT}/text_encoder_2/config.json`), 'text_encoder_2/config.json');
    const model = CLIPTextModelWithProjection.create(config);
    await this.network('CLIPTextModelWithProjection', 'text_encoder_2', dtype, model.registry, [
      ['te2', async () => {
        const ids = this.ids('te2', 'tokenizer_2');
        const out = model.forward(ids.ids, { outputHiddenStates: true });
        const states = out.hiddenStates!;
        const textEmbeds = await out.textEmbeds.read();
        const rows = [
          ids.row,
          compare('te2.embeddings', await states[0]!.read(), this.get('te2.embeddings'), dtype),
          compare('te2.hidden_states.16', await states[16]!.read(), this.get('te2.hidden_states.16'), dtype),
          compare('te2.hidden_states_penultimate', await out.penultimate.read(), this.get('te2.hidden_states_penultimate'), dtype),
          compare('te2.text_embeds', textEmbeds, this.get('te2.text_embeds'), dtype),
          compare('pooled_prompt_embeds', textEmbeds, this.get('pooled_prompt_embeds'), dtype),
        ];
        // prompt_embeds as the pipeline forms it, when te1 ran in this dtype too
        const te1 = this.te1Penultimate.get(dtype);
        if (te1) {
          const promptEmbeds = concat([te1, out.penultimate], 2); // (1, 77, 2048)
          rows.push(compare('prompt_embeds', await promptEmbeds.read(), this.get('prompt_embeds'), dtype));
          promptEmbeds.release();
        }
        for (const t of [...states, out.lastHiddenState, out.pooled, out.textEmbeds]) t.release();
        return rows;
      }],
    ]);
  }

  /** The reference's ids (the models' input), and the pipeline tokenizer's ids checked against them. */
  private ids(encoder: 'te1' | 'te2', folder: string): { ids: Int32Array; row: Row } {
    const expected = this.get(`${encoder}.input_ids`);
    const text = (name: string): string => readFileSync(`${TOKENIZERS}/${folder}/${name}`, 'utf8');
    const tokenizer = new CLIPTokenizer(
      { vocab: text('vocab.json'), merges: text('merges.txt'), tokenizerConfig: text('tokenizer_config.json'), specialTokensMap: text('special_tokens_map.json') },
      folder,
    );
    const prompt = (readJson(`${SYNTHETIC}/index.json`) as { prompt: string }).prompt;
    return { ids: Int32Array.from(expected.data), row: compareIds(`${encoder}.input_ids (tokenizer)`, tokenizer.encode(prompt), expected) };
  }

  async unet(dtype: DType): Promise<void> {
    const model = UNet2DConditionModel.create(parseUNetConfig(readJson(`${LAYOUT}/unet/config.json`)));
    const run = (which: 'unet' | 'unet2') => async (): Promise<Row[]> => {
      const inputs = {
        sample: this.upload(`${which}.sample`, dtype),
        timestep: this.get(`${which}.timestep`).data[0]!,
        encoderHiddenStates: this.upload('prompt_embeds', dtype),
        textEmbeds: this.upload('pooled_prompt_embeds', dtype),
        timeIds: this.get(`${which}.time_ids`).data,
      };
      const hooked: Array<[string, Promise<Float32Array>]> = [];
      const out = model.forward(inputs, (name, t) => {
        if (this.ref.has(`${which}.hook.${name}`)) hooked.push([`${which}.hook.${name}`, t.read()]);
      });
      const rows = await this.compareAll(hooked, `${which}.hook.`, dtype);
      rows.push(compare(`${which}.out`, await out.read(), this.get(`${which}.out`), dtype));
      for (const t of [out, inputs.sample, inputs.encoderHiddenStates, inputs.textEmbeds]) t.release();
      return rows;
    };
    await this.network('UNet2DConditionModel', 'unet', dtype, model.registry, [
      ['unet', run('unet')],
      ['unet2', run('unet2')],
    ]);
  }

  /** The VAE in f32 (the pipeline upcasts it: force_upcast). */
  async vae(): Promise<void> {
    const dtype: DType = 'f32';
    const model = AutoencoderKL.create(parseVaeConfig(readJson(`${LAYOUT}/vae/config.json`), 'vae/config.json'));
    const hook = (prefix: string, hooked: Array<[string, Promise<Float32Array>]>) => (name: string, t: Tensor): void => {
      if (this.ref.has(`${prefix}${name}`)) hooked.push([`${prefix}${name}`, t.read()]);
    };
    await this.network('AutoencoderKL', 'vae', dtype, model.registry, [
      ['decode', async () => {
        const latents = this.upload('decode.latents', dtype);
        const hooked: Array<[string, Promise<Float32Array>]> = [];
        const image = model.decode(latents, hook('decode.hook.', hooked)); // (1, 3, 128, 128)
        const rows = await this.compareAll(hooked, 'decode.hook.', dtype);
        rows.push(compare('decode.image', await image.read(), this.get('decode.image'), dtype));
        image.release();
        latents.release();
        return rows;
      }],
      ['encode', async () => {
        // The pipeline's preprocessing of the uint8 picture, checked against diffusers' on the way.
        const picture = this.get('encode.image_uint8');
        const [height, width] = picture.shape as [number, number, number];
        const pixels = imageToTensorData({ width, height, data: Uint8Array.from(picture.data) });
        const rows = [compare('encode.image', pixels, this.get('encode.image'), dtype)];
        const image = this.upload('encode.image', dtype, pixels);
        const hooked: Array<[string, Promise<Float32Array>]> = [];
        const { mean, logvar, std } = model.encode(image, hook('encode.hook.', hooked)); // (1, 4, 16, 16) each
        rows.push(...(await this.compareAll(hooked, 'encode.hook.', dtype)));
        rows.push(compare('encode.mean', await mean.read(), this.get('encode.mean'), dtype));
        rows.push(compare('encode.logvar', await logvar.read(), this.get('encode.logvar'), dtype));
        for (const t of [mean, logvar, std, image]) t.release();
        return rows;
      }],
    ]);
  }

  /** Rows for the hooked tensors, plus a failing row for every reference hook never observed. */
  private async compareAll(hooked: Array<[string, Promise<Float32Array>]>, prefix: string, dtype: DType): Promise<Row[]> {
    const rows: Row[] = [];
    for (const [name, values] of hooked) rows.push(compare(name, await values, this.get(name), dtype));
    for (const name of this.ref.keys()) {
      if (name.startsWith(prefix) && !hooked.some(([n]) => n === name)) {
        rows.push({ name, shape: formatShape(this.get(name).shape), relL2: NaN, maxRel: NaN, maxRef: NaN, pass: false, note: 'never hooked' });
      }
    }
    return rows;
  }

  dispose(): void {
    for (const t of this.te1Penultimate.values()) t.release();
  }
}

// ---- summary --------------------------------------------------------------------------------

const gb = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function summary(gpu: Gpu, results: readonly NetworkResult[]): boolean {
  console.log(`\n## Summary (${gpu.adapterName}, ${new Date().toISOString().slice(0, 10)})\n`);
  console.log('| network | dtype | load s (CPU generation s) | case | forward s | tensors passed | worst rel L2 | worst max\\|Δ\\|/max(1,\\|ref\\|) | weights | activation peak | GPU peak |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  let ok = true;
  for (const r of results) {
    for (const c of r.cases) {
      const floats = c.rows.filter((row) => row.note === undefined || !row.pass);
      const passed = c.rows.filter((row) => row.pass).length;
      ok &&= passed === c.rows.length;
      const worst = (key: 'relL2' | 'maxRel'): string => fmt(floats.reduce((m, row) => (row[key] > m || Number.isNaN(row[key]) ? row[key] : m), 0));
      // The weights plus the larger of the load's staging and the case's activations.
      const peak = r.load.weightBytes + Math.max(r.loadPeakBytes, c.peakBytes);
      console.log(
        `| ${r.network} | ${r.dtype}${r.q8 ? ', q8' : ''} | ${r.load.seconds.toFixed(0)} (${r.load.generateSeconds === null ? 'GPU' : r.load.generateSeconds.toFixed(0)}) | ${c.name} | ${c.seconds.toFixed(1)} | ${passed}/${c.rows.length} | ` +
          `${worst('relL2')} | ${worst('maxRel')} | ${gb(r.load.weightBytes)} | ${mb(c.peakBytes)} | ${gb(peak)} |`,
      );
    }
  }
  // On a software adapter GPU memory is host memory, so this bounds weights + activations too.
  console.log(`\nProcess peak RSS: ${gb(process.resourceUsage().maxRSS * 1024)}.`);
  console.log(`Bars: f32 max|Δ|/max(1,|ref|) ≤ ${F32_BAR}; f16 relative L2 ≤ ${F16_BAR}; 8-bit weights relative L2 ≤ ${Q8_BAR}; token ids exact.`);
  console.log(ok ? 'All tensors pass.' : 'Some tensors FAIL (see above).');
  return ok;
}

// ---- main -----------------------------------------------------------------------------------

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { dtype: { type: 'string' }, only: { type: 'string' }, 'cpu-synthetic': { type: 'boolean', default: false }, weights: { type: 'string' }, help: { type: 'boolean', default: false } },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const only = new Set((values.only ?? CASES.join(',')).split(',').map((s) => s.trim()));
  const unknown = [...only].filter((c) => !(CASES as readonly string[]).includes(c));
  const problem =
    unknown.length > 0 ? `unknown case(s) ${unknown.join(', ')}`
    : values.dtype !== undefined && !['f32', 'f16', 'both'].includes(values.dtype) ? `--dtype must be f32, f16 or both, not ${values.dtype}`
    : values.weights !== undefined && values.weights !== 'q8' ? `--weights must be q8, not ${values.weights}`
    : null;
  if (problem) {
    console.error(`parity-real-size: ${problem}\n${USAGE}`);
    return 2;
  }

  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const gpu = await openNodeGpu();
  try {
    const asked = values.dtype ?? (gpu.f16 ? 'both' : 'f32');
    if (asked !== 'f32' && !gpu.f16) throw new Error(`parity-real-size: --dtype ${asked} needs shader-f16, which ${gpu.adapterName} lacks`);
    const dtypes: DType[] = asked === 'both' ? ['f32', 'f16'] : [asked as DType];
    const q8 = values.weights === 'q8';
    console.log(`adapter: ${gpu.adapterName}; dtypes: ${dtypes.join(', ')}${q8 ? ' with 8-bit weights' : ''} (VAE: f32); cases: ${[...only].join(', ')}`);

    const runner = new Runner(gpu, await readReference(`${SYNTHETIC}/reference.safetensors`), only as Set<CaseName>, values['cpu-synthetic'], q8);
    try {
      for (const dtype of dtypes) await runner.te1(dtype);
      for (const dtype of dtypes) await runner.te2(dtype);
      for (const dtype of dtypes) await runner.unet(dtype);
      await runner.vae();
    } finally {
      runner.dispose();
    }
    return summary(gpu, runner.results) ? 0 : 1;
  } finally {
    gpu.dispose();
  }
}

process.exitCode = await main();
