// `npm run gpu:bundle [-- --out DIR]`: writes a self-contained benchmark folder (default
// .gpu-bundle/, ignored) for a Linux x86-64 GPU box with no Node, no npm and no internet:
//
//   run.sh              the entry point (tools/gpu-bundle/run.sh): `bash run.sh [--small] OUTDIR`
//   node.xz.1, node.xz.2  this machine's Node binary, stripped, xz (x86 BCJ filter), cut in two:
//                       with the repository, the whole of it is over what one device-tool call
//                       carries (see the end of this file)
//   dawn.node.xz        the `webgpu` package's linux-x64 Dawn addon, stripped, xz
//   js/*.mjs            bench-kernels, bench-subgroup-matrix, bench-pipeline, gpu-info,
//                       bench-summary: esbuild bundles
//                       with every package inlined; `webgpu` loads dawn.node from beside them
//   fixtures.tar.xz     what they read: the real layout's configs, weights-manifest.json and
//                       unet-call-shapes.json, the CLIP tokenizer files, and the tiny fixture's
//                       configs with a weights manifest made from its safetensors headers (--small)
//   vulkan/*.deb        Debian's libvulkan1 and libglvnd0 for amd64 (apt-get download), unpacked
//                       by run.sh into its temp folder when the box has no Vulkan loader
//   torch_baseline.py   the PyTorch baseline (tools/torch-baseline.py)
//   MANIFEST.txt        every file with its size and sha256, and where it came from; run.sh
//                       checks the files against it before anything else
//
// Options: --out DIR; --debs DIR (take the .debs from DIR instead of downloading them; default
// .gl/ when it holds them, as the device README's recipe leaves it). The compressed Node and Dawn
// are reused while their source is unchanged (the xz of Node takes ~2 min).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MiB = 2 ** 20;
/** The bundle's own limit; the device tool carries 64 MiB together with the repository. */
const LIMIT_MIB = 60;
const DEVICE_LIMIT_MIB = 64;
const DEVICE_CARRY_PATHS = 8;

const { values } = parseArgs({ options: { out: { type: 'string', default: '.gpu-bundle' }, debs: { type: 'string' } } });
const OUT = resolve(values.out);
if (process.platform !== 'linux' || process.arch !== 'x64') {
  throw new Error(`gpu-bundle: the bundle carries this machine's Node; build it on Linux x86-64 (this is ${process.platform}-${process.arch})`);
}

const log = (line) => console.log(line);
const sh = (cmd, args, options = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], ...options });
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

mkdirSync(OUT, { recursive: true });
// Everything but the cached compressed binaries and debs is rebuilt.
for (const name of readdirSync(OUT)) {
  if (!/^(node|dawn\.node)\.xz(\.\d|\.source)?$/.test(name) && name !== 'vulkan') rmSync(join(OUT, name), { recursive: true, force: true });
}
const tmp = mkdtempSync(join(tmpdir(), 'gpu-bundle-'));

/** Strips (when `strip` exists) and xz-compresses `src` to OUT/name, or to OUT/name.1 … name.N
 *  when `parts` > 1, unless OUT/name.source says it is done. */
function compressBinary(src, name, parts = 1) {
  const st = statSync(src);
  const key = `${src} ${st.size} ${st.mtimeMs} ${parts}\n`;
  const dest = join(OUT, name);
  const outputs = parts === 1 ? [dest] : Array.from({ length: parts }, (_, i) => `${dest}.${i + 1}`);
  if (outputs.every((f) => existsSync(f)) && existsSync(`${dest}.source`) && readFileSync(`${dest}.source`, 'utf8') === key) {
    log(`${name}: reused (source unchanged: ${src})`);
    return;
  }
  for (const f of [dest, ...outputs]) rmSync(f, { force: true });
  let input = src;
  if (has('strip')) {
    input = join(tmp, basename(name, '.xz'));
    sh('strip', ['-o', input, src]);
  } else {
    log(`${name}: no \`strip\` here, compressing unstripped`);
  }
  log(`${name}: xz of ${(statSync(input).size / MiB).toFixed(1)} MiB (${src}) …`);
  const started = Date.now();
  const whole = parts === 1 ? dest : join(tmp, name);
  sh('sh', ['-c', 'xz --x86 --lzma2=preset=9e,dict=96MiB -T1 -c "$1" > "$2"', '_', input, whole]);
  log(`${name}: ${(statSync(whole).size / MiB).toFixed(2)} MiB in ${((Date.now() - started) / 1000).toFixed(0)} s${parts > 1 ? `, in ${parts} parts` : ''}`);
  if (parts > 1) {
    const bytes = readFileSync(whole);
    const step = Math.ceil(bytes.length / parts);
    outputs.forEach((f, i) => writeFileSync(f, bytes.subarray(i * step, (i + 1) * step)));
  }
  writeFileSync(`${dest}.source`, key);
}

// ---- Node and Dawn ---------------------------------------------------------------------------
compressBinary(process.execPath, 'node.xz', 2);
const require = createRequire(import.meta.url);
const webgpuDir = dirname(require.resolve('webgpu'));
const webgpuVersion = JSON.parse(readFileSync(join(webgpuDir, 'package.json'), 'utf8')).version;
compressBinary(join(webgpuDir, 'dist', 'linux-x64', 'dawn.node'), 'dawn.node.xz');

// ---- the scripts ------------------------------------------------------------------------------
/** `webgpu`'s index.js, loading dawn.node from beside the bundle (or $SDXL_DAWN_NODE). */
const dawnBesideBundle = {
  name: 'dawn-beside-bundle',
  setup(b) {
    b.onLoad({ filter: /[\\/]webgpu[\\/]index\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const from = "join(__dirname, 'dist', `${process.platform}-${arch}`, 'dawn.node')";
      if (!source.includes(from)) throw new Error(`gpu-bundle: ${args.path} no longer loads dawn.node as expected; update the plugin`);
      return { contents: source.replace(from, "(process.env.SDXL_DAWN_NODE || join(__dirname, 'dawn.node'))"), loader: 'js' };
    });
  },
};
const ENTRIES = { 'sdxl-turbo': 'src/cli.ts', 'bench-kernels': 'tools/bench-kernels.ts', 'bench-subgroup-matrix': 'tools/bench-subgroup-matrix.ts', 'bench-pipeline': 'tools/bench-pipeline.ts', 'gpu-info': 'tools/gpu-info.ts', 'bench-summary': 'tools/bench-summary.ts' };
await build({
  absWorkingDir: ROOT,
  entryPoints: Object.entries(ENTRIES).map(([out, path]) => ({ in: path, out })),
  outdir: join(OUT, 'js'),
  outExtension: { '.js': '.mjs' },
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  loader: { '.wgsl': 'text' },
  // CommonJS dependencies (cli-progress, jpeg-js) call require() for Node's modules.
  banner: { js: "import { createRequire as __sdxlCreateRequire } from 'node:module'; const require = __sdxlCreateRequire(import.meta.url);" },
  plugins: [dawnBesideBundle],
  minifyWhitespace: true,
  legalComments: 'none',
  logLevel: 'warning',
});

// ---- fixtures ----------------------------------------------------------------------------------
const stage = join(tmp, 'fixtures');
const copy = (from, to = from) => {
  mkdirSync(dirname(join(stage, to)), { recursive: true });
  copyFileSync(join(ROOT, from), join(stage, to));
};
const LAYOUT = 'test/fixtures/sdxl-turbo-layout';
const TINY = 'test/fixtures/tiny-sdxl';
const CONFIGS = ['model_index.json', 'scheduler/scheduler_config.json', 'text_encoder/config.json', 'text_encoder_2/config.json', 'unet/config.json', 'vae/config.json'];
for (const f of [...CONFIGS, 'weights-manifest.json', 'unet-call-shapes.json', 'SOURCES.md']) copy(`${LAYOUT}/${f}`);
for (const t of ['tokenizer', 'tokenizer_2']) {
  for (const f of readdirSync(join(ROOT, LAYOUT, t))) copy(`${LAYOUT}/${t}/${f}`);
  for (const f of readdirSync(join(ROOT, TINY, t))) copy(`${TINY}/${t}/${f}`); // vocabulary and merges for --synthetic
}
// --small: the tiny fixture's architecture, its weights replaced by SPEC.md's synthetic ones
// (names and shapes from the safetensors headers; no weight file travels).
const TINY_LAYOUT = 'test/fixtures/tiny-sdxl-layout';
for (const f of CONFIGS) copy(`${TINY}/${f}`, `${TINY_LAYOUT}/${f}`);
const WEIGHT_FILES = { text_encoder: 'model.fp16.safetensors', text_encoder_2: 'model.fp16.safetensors', unet: 'diffusion_pytorch_model.fp16.safetensors', vae: 'diffusion_pytorch_model.fp16.safetensors' };
const components = {};
for (const [component, file] of Object.entries(WEIGHT_FILES)) {
  const bytes = readFileSync(join(ROOT, TINY, component, file));
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
  const tensors = Object.entries(header).filter(([name]) => name !== '__metadata__').map(([name, t]) => ({ name, shape: t.shape }));
  components[component] = { num_tensors: tensors.length, tensors };
}
writeFileSync(join(stage, TINY_LAYOUT, 'weights-manifest.json'), `${JSON.stringify({ generated_by: 'tools/gpu-bundle.mjs from the safetensors headers of test/fixtures/tiny-sdxl (fp16 files)', components })}\n`);
sh('sh', ['-c', 'cd "$1" && tar -c --owner=0 --group=0 --sort=name test | xz -9e -T1 > "$2"', '_', stage, join(OUT, 'fixtures.tar.xz')]);

// ---- the rest ---------------------------------------------------------------------------------
copyFileSync(join(ROOT, 'tools/gpu-bundle/run.sh'), join(OUT, 'run.sh'));
chmodSync(join(OUT, 'run.sh'), 0o755);
copyFileSync(join(ROOT, 'tools/torch-baseline.py'), join(OUT, 'torch_baseline.py'));

const debDir = join(OUT, 'vulkan');
mkdirSync(debDir, { recursive: true });
const PACKAGES = ['libvulkan1', 'libglvnd0'];
const haveDeb = (dir, p) => existsSync(dir) && readdirSync(dir).find((f) => f.startsWith(`${p}_`) && f.endsWith('_amd64.deb'));
for (const p of PACKAGES) {
  if (haveDeb(debDir, p)) continue;
  const from = values.debs ?? join(ROOT, '.gl');
  const found = haveDeb(from, p);
  if (found) {
    copyFileSync(join(from, found), join(debDir, found));
    continue;
  }
  if (values.debs) throw new Error(`gpu-bundle: no ${p}_*_amd64.deb in ${values.debs}`);
  log(`vulkan: apt-get download ${p} (amd64) …`);
  const lists = join(tmp, 'apt-lists');
  mkdirSync(join(lists, 'partial'), { recursive: true });
  const o = ['-oAPT::Architecture=amd64', '-oAPT::Architectures=amd64', `-oDir::State::Lists=${lists}`];
  if (!existsSync(join(lists, 'lock'))) sh('apt-get', [...o, 'update'], { stdio: 'ignore' });
  sh('apt-get', [...o, 'download', p], { cwd: debDir, stdio: 'ignore' });
  if (!haveDeb(debDir, p)) throw new Error(`gpu-bundle: apt-get download ${p} left no .deb in ${debDir}`);
}
for (const f of readdirSync(debDir)) if (!PACKAGES.some((p) => f.startsWith(`${p}_`))) rmSync(join(debDir, f));

// ---- manifest and size ------------------------------------------------------------------------
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else files.push(path);
  }
};
walk(OUT);
const bundled = files.filter((f) => !f.endsWith('.source'));
const total = bundled.reduce((s, f) => s + statSync(f).size, 0);
let commit = 'unknown';
try {
  commit = sh('git', ['-C', ROOT, 'describe', '--always', '--dirty']).toString().trim();
} catch {}
const manifest = [
  `SDXL-Turbo WebGPU GPU benchmark bundle — built ${new Date().toISOString()} from ${commit} by tools/gpu-bundle.mjs`,
  `node ${process.version} (${process.execPath}), webgpu ${webgpuVersion} (dawn.node linux-x64), debs: ${readdirSync(debDir).join(', ')}`,
  'Run: bash run.sh [--small] OUTDIR   (bash run.sh --help)',
  '',
  ...bundled.map((f) => `${createHash('sha256').update(readFileSync(f)).digest('hex')}  ${String(statSync(f).size).padStart(10)}  ${relative(OUT, f)}`),
];
writeFileSync(join(OUT, 'MANIFEST.txt'), `${manifest.join('\n')}\n`);
const size = total + statSync(join(OUT, 'MANIFEST.txt')).size;
rmSync(tmp, { recursive: true, force: true });

log(`\n${relative(ROOT, OUT) || OUT}: ${bundled.length + 1} files, ${(size / MiB).toFixed(2)} MiB`);
for (const f of bundled) log(`  ${(statSync(f).size / MiB).toFixed(2).padStart(6)} MiB  ${relative(OUT, f)}`);
if (size > LIMIT_MIB * MiB) throw new Error(`gpu-bundle: ${(size / MiB).toFixed(1)} MiB is over the ${LIMIT_MIB} MiB limit`);
// The device tool sends the repository's tracked files with every call, 64 MiB in all: the bundle
// goes in two calls on one warm machine (BENCHMARKS.md, "On any Linux GPU box"), the first
// carrying half of Node and Dawn, the second the rest. Print both carry lists, and whether each fits.
try {
  const tracked = sh('git', ['-C', ROOT, 'ls-files', '-z']).toString().split('\0').filter(Boolean);
  const repo = tracked.reduce((s, f) => s + (existsSync(join(ROOT, f)) ? statSync(join(ROOT, f)).size : 0), 0);
  const sizeOf = (p) => (statSync(p).isDirectory() ? readdirSync(p).reduce((t, n) => t + sizeOf(join(p, n)), 0) : statSync(p).size);
  const first = ['node.xz.1', 'dawn.node.xz'];
  const entries = readdirSync(OUT).filter((n) => !n.endsWith('.source'));
  const calls = [first, entries.filter((n) => !first.includes(n))];
  const at = relative(ROOT, OUT);
  const inside = at !== '' && !at.startsWith('..');
  log(`device tool: the repository's tracked files are ${(repo / MiB).toFixed(1)} MiB; two calls on one warm machine:`);
  calls.forEach((names, i) => {
    const sum = (repo + names.reduce((s, n) => s + sizeOf(join(OUT, n)), 0)) / MiB;
    const carry = JSON.stringify(names.map((n) => (inside ? join(at, n) : n)));
    const fits = sum <= DEVICE_LIMIT_MIB && names.length <= DEVICE_CARRY_PATHS;
    log(`  call ${i + 1}: ${sum.toFixed(1)} MiB, ${names.length} paths ${fits ? `(within its ${DEVICE_LIMIT_MIB} MiB and ${DEVICE_CARRY_PATHS} paths)` : `— OVER its ${DEVICE_LIMIT_MIB} MiB or ${DEVICE_CARRY_PATHS} paths`}: carry=${carry}`);
  });
  if (!inside) log(`  (${OUT} is outside the repository: the device tool carries only paths inside it)`);
} catch {}
