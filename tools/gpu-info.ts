// Prints the WebGPU adapter Dawn picks (as the benchmarks open it: high-performance), its info,
// features and the limits the engine cares about, as text and (--json OUT) JSON. Exit code 1 when
// there is no adapter. Used first by the GPU bundle's run.sh (tools/gpu-bundle.mjs), so a box
// whose Vulkan driver Dawn cannot reach fails in seconds, not after the weights are generated.

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { create, globals } from 'webgpu';

const LIMITS = ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension'] as const;

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { json: { type: 'string' } } });
  Object.assign(globalThis, globals);
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const gpu = create([]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    console.error('gpu-info: no WebGPU adapter (Dawn found no usable Vulkan driver)');
    return 1;
  }
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number; subgroupMatrixConfigs?: unknown[] };
  const out = {
    node: { execPath: process.execPath, version: process.version },
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    subgroupMinSize: info.subgroupMinSize ?? null,
    subgroupMaxSize: info.subgroupMaxSize ?? null,
    subgroupMatrixConfigs: info.subgroupMatrixConfigs ?? null,
    features: [...adapter.features].sort(),
    limits: Object.fromEntries(LIMITS.map((k) => [k, adapter.limits[k]])),
  };
  console.log(`node: ${out.node.execPath} ${out.node.version}`);
  console.log(`adapter: ${[out.description, out.vendor, out.architecture, out.device].filter(Boolean).join(' / ')}`);
  console.log(`subgroups: ${out.subgroupMinSize ?? '?'}–${out.subgroupMaxSize ?? '?'}; subgroup matrix configs: ${JSON.stringify(out.subgroupMatrixConfigs)}`);
  console.log(`features: ${out.features.join(' ')}`);
  console.log(`limits: ${LIMITS.map((k) => `${k} ${out.limits[k]}`).join(', ')}`);
  if (values.json) writeFileSync(values.json, `${JSON.stringify(out, null, 2)}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`gpu-info: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
