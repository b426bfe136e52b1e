// The layout rules of kernels/ (docs/OPS.md): every kernel has a same-named launcher, float64
// reference and test; shared WGSL comes through //!include; the preprocessor resolves it.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defineKernel, specialize } from '../../src/gpu/pipeline-cache.js';
import type { Gpu } from '../../src/gpu/runtime.js';
import { uniforms } from '../../src/gpu/uniforms.js';

const kernels = readdirSync('kernels').filter((f) => f.endsWith('.wgsl')).map((f) => f.slice(0, -'.wgsl'.length));

describe('kernels/', () => {
  it('every kernel has src/ops/X.ts (which defines it), test/reference/X.ts and a test', () => {
    expect(kernels.length).toBeGreaterThan(10);
    for (const name of kernels) {
      const launcher = `src/ops/${name}.ts`;
      expect(existsSync(launcher), launcher).toBe(true);
      expect(readFileSync(launcher, 'utf8'), launcher).toContain(`kernels/${name}.wgsl`);
      expect(existsSync(`test/reference/${name}.ts`), `test/reference/${name}.ts`).toBe(true);
      // matmul-gemv runs through matmul's windows and is tested there (variant 'gemv'), as
      // attention-sg and attention-direct through attention (variants 'sg', 'direct').
      const test = `test/ops/${{ 'matmul-gemv': 'matmul', 'attention-sg': 'attention', 'attention-direct': 'attention' }[name] ?? name}.test.ts`;
      expect(existsSync(test), test).toBe(true);
    }
  });

  it('no kernel spells out shared WGSL: the folded grid index and the reductions are included', () => {
    for (const name of kernels) {
      const source = readFileSync(`kernels/${name}.wgsl`, 'utf8');
      expect(source, name).not.toMatch(/\.y \* nwg\.x/); // workgroupIndex (include grid)
      expect(source, name).not.toMatch(/fn sumAll/); // include reduce
    }
  });

  it('name things in camelCase, as WGSL builtins are (snake_case only in builtin names)', () => {
    const builtins = new Set(['read_write', 'workgroup_size', 'workgroup_id', 'num_workgroups', 'local_invocation_id', 'local_invocation_index', 'global_invocation_id', 'subgroup_invocation_id', 'subgroup_matrix_left', 'subgroup_matrix_right', 'subgroup_matrix_result', 'row_major',
      'subgroup_uniformity']); // a WGSL diagnostic rule (attention-sg)
    for (const file of [...kernels.map((k) => `kernels/${k}.wgsl`), ...readdirSync('kernels/include').map((f) => `kernels/include/${f}`)]) {
      const code = readFileSync(file, 'utf8').replace(/\/\/.*$/gm, ''); // comments may quote other code
      const snake = [...code.matchAll(/\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b/g)].map((m) => m[0]).filter((w) => !builtins.has(w));
      expect(snake, file).toEqual([]);
    }
  });

  it('references stay importable outside vitest (tools/bench-kernels.ts bundles them)', () => {
    for (const file of readdirSync('test/reference')) {
      expect(readFileSync(`test/reference/${file}`, 'utf8'), file).not.toMatch(/from '(vitest|\.\.\/helpers\/)/);
    }
  });
});

describe('specialize', () => {
  const layout = uniforms(['n', 'u32']);
  it('prepends constants and defines, the Params struct, and resolves includes once', () => {
    const kernel = defineKernel({ name: 'k', source: '//!include grid\nfn main() {}', layout, constants: { WG: 64 } });
    const wgsl = specialize(kernel, { T: 'f16', FAST: true });
    expect(wgsl).toMatch(/^enable f16;\nconst WG: u32 = 64u;\nalias T = f16;\nconst FAST: bool = true;\nstruct Params \{\n {2}n: u32,\n\}/);
    expect(wgsl).toContain('fn workgroupIndex(');
    expect(wgsl).not.toContain('//!include');
  });

  it("SUBGROUPS = true enables the feature and takes an include's subgroup variant; false keeps the workgroup one", () => {
    const kernel = defineKernel({ name: 'k', source: '//!include reduce\nfn main() {}', layout, constants: { WG: 64 } });
    const on = specialize(kernel, { SUBGROUPS: true });
    expect(on).toMatch(/^enable subgroups;\n/);
    expect(on).toContain('subgroupAdd(');
    const off = specialize(kernel, { SUBGROUPS: false });
    expect(off).not.toContain('subgroup');
    expect(off).toContain('fn sumAll(');
  });

  it('rejects an unknown or repeated include and a define that redefines a constant', () => {
    const make = (source: string) => defineKernel({ name: 'k', source, layout, constants: { WG: 64 } });
    expect(() => specialize(make('//!include nope'), {})).toThrow(/k: no shared WGSL named nope \(have attention-load, conv2d-lane, conv2d-lane-subgroups, f16-bits, gelu, grid, matmul-bindings, matmul-lane, matmul-lane-subgroups, q8, reduce, reduce-subgroups\)/);
    expect(() => specialize(make('//!include grid\n//!include grid'), {})).toThrow(/k: grid included twice/);
    expect(() => specialize(make(''), { WG: 128 })).toThrow(/k: define WG is one of the kernel's constants/);
  });
});

describe('dispatch', () => {
  it("types the uniforms by the kernel's layout (tsc checks the expected errors below)", () => {
    const kernel = defineKernel({ name: 'k', source: '', layout: uniforms(['n', 'u32'], ['eps', 'f32']) });
    const record = (gpu: Gpu): void => {
      gpu.dispatch({ kernel, defines: {}, uniforms: { n: 1, eps: 0 }, bindings: [], workgroups: [1] });
      // @ts-expect-error: eps is missing
      gpu.dispatch({ kernel, defines: {}, uniforms: { n: 1 }, bindings: [], workgroups: [1] });
      // @ts-expect-error: m is not in the layout
      gpu.dispatch({ kernel, defines: {}, uniforms: { n: 1, eps: 0, m: 2 }, bindings: [], workgroups: [1] });
    };
    expect(record).toBeTypeOf('function');
  });
});
