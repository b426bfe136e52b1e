// Times loading the synthetic real-size weights (test/fixtures/real-size-synthetic/SPEC.md) of
// whole components both ways, alternating in one process so both see the same machine: on the
// CPU (SyntheticSource: generate in JS, upload, convert) and on the GPU (SyntheticGpuSource:
// generated where they land). Each is WeightRegistry.load of every tensor of the component,
// then a GPU sync; the weights are released (and Dawn made to return the memory) after each.
//
//   node tools/build.mjs && node dist/tools/bench-synthetic-load.js [--component text_encoder,vae] [--dtype f32|f16] [--rounds N]

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openNodeGpu } from '../src/gpu/node.js';
import { SyntheticSource } from '../src/io/synthetic.js';
import { SyntheticGpuSource } from '../src/io/synthetic-gpu.js';
import type { TensorSource } from '../src/io/tensor-source.js';
import { WeightRegistry } from '../src/models/weights.js';
import { synthetic } from '../src/ops/synthetic.js';
import type { DType } from '../src/tensor.js';
import { median } from './bench-report.js';

const { values } = parseArgs({ options: { component: { type: 'string', default: 'text_encoder' }, dtype: { type: 'string', default: 'f32' }, rounds: { type: 'string', default: '2' } } });
const dtype = values.dtype as DType;
if (!['f32', 'f16'].includes(dtype)) throw new Error(`--dtype must be f32 or f16, not ${values.dtype}`);
const rounds = Number(values.rounds);
const manifest: unknown = JSON.parse(readFileSync('test/fixtures/sdxl-turbo-layout/weights-manifest.json', 'utf8'));

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const gpu = await openNodeGpu();
if (dtype === 'f16' && !gpu.f16) throw new Error(`--dtype f16 needs shader-f16, which ${gpu.adapterName} lacks`);
console.log(`adapter: ${gpu.adapterName}; ${dtype}; ${rounds} round(s), CPU then GPU in each`);

async function load(component: string, source: TensorSource): Promise<number> {
  const registry = new WeightRegistry(component);
  for (const [name, entry] of source.entries) registry.declare(name, entry.shape);
  const start = performance.now();
  await registry.load(gpu, source, dtype);
  await gpu.sync();
  const seconds = (performance.now() - start) / 1000;
  registry.release();
  await gpu.releaseIdleMemory();
  return seconds;
}

for (const component of values.component.split(',')) {
  const times = { cpu: [] as number[], gpu: [] as number[] };
  // Compile the kernel outside the timing.
  const first = SyntheticSource.fromManifest(manifest, component).entries.values().next().value!;
  synthetic(gpu, first.name, first.shape, dtype).release();
  for (let r = 0; r < rounds; r++) {
    times.cpu.push(await load(component, SyntheticSource.fromManifest(manifest, component)));
    times.gpu.push(await load(component, SyntheticGpuSource.fromManifest(manifest, component)));
    console.log(`${component} round ${r + 1}: CPU generate + upload ${times.cpu.at(-1)!.toFixed(1)} s, GPU generate ${times.gpu.at(-1)!.toFixed(1)} s`);
  }
  const [cpu, gpuTime] = [median(times.cpu), median(times.gpu)];
  console.log(`${component} (${dtype}) median: CPU ${cpu.toFixed(1)} s, GPU ${gpuTime.toFixed(1)} s: ${(cpu / gpuTime).toFixed(2)}× faster`);
}
gpu.dispose();
