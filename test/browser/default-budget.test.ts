// defaultMemoryBudget, the browser's default GPU memory budget (src/pipeline/default-budget.ts),
// on the adapters and RAM a page can report: a pure function, checked in Node.

import { describe, expect, it } from 'vitest';
import { isSoftwareAdapter } from '../../src/gpu/software-adapter.js';
import { type BudgetAdapter, defaultMemoryBudget } from '../../src/pipeline/default-budget.js';

const GIB = 2 ** 30;
const MIB = 2 ** 20;
const adapter = (maxBufferSize: number, info: BudgetAdapter['info'] = { vendor: 'apple', architecture: 'metal-3' }): BudgetAdapter => ({ limits: { maxBufferSize }, info });

describe('defaultMemoryBudget', () => {
  it('half the reported RAM, at least what one buffer may hold, never above the RAM', () => {
    // Chromium on an 8 GiB machine (deviceMemory 8), an adapter offering 2 GiB buffers: RAM / 2.
    expect(defaultMemoryBudget(adapter(2 * GIB), 8)).toBe(4 * GIB);
    // An adapter that offers one 6 GiB buffer has 6 GiB: more than half of 8.
    expect(defaultMemoryBudget(adapter(6 * GIB), 8)).toBe(6 * GIB);
    // …but not more than the RAM the page was told about.
    expect(defaultMemoryBudget(adapter(16 * GIB), 8)).toBe(8 * GIB);
    // A 4 GiB phone.
    expect(defaultMemoryBudget(adapter(GIB), 4)).toBe(2 * GIB);
  });

  it('without navigator.deviceMemory (Safari, Firefox) assumes 4 GiB of RAM', () => {
    expect(defaultMemoryBudget(adapter(256 * MIB), undefined)).toBe(2 * GIB);
    expect(defaultMemoryBudget(adapter(4 * GIB), undefined)).toBe(4 * GIB);
    // A nonsense report counts as none.
    expect(defaultMemoryBudget(adapter(256 * MIB), 0)).toBe(2 * GIB);
    expect(defaultMemoryBudget(adapter(256 * MIB), Number.NaN)).toBe(2 * GIB);
  });

  it('a software adapter gets a quarter of the RAM, whatever buffers it offers', () => {
    const swiftshader = adapter(16 * GIB, { vendor: 'google', architecture: 'swiftshader' });
    expect(isSoftwareAdapter(swiftshader.info)).toBe(true);
    expect(defaultMemoryBudget(swiftshader, 8)).toBe(2 * GIB);
    expect(isSoftwareAdapter({ isFallbackAdapter: true })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' })).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'ampere' })).toBe(false);
  });

  it('rounds down to 256 MiB, and is at least 256 MiB', () => {
    expect(defaultMemoryBudget(adapter(3 * GIB + 100 * MIB), 8)).toBe(4 * GIB);
    expect(defaultMemoryBudget(adapter(5 * GIB + 100 * MIB), 8)).toBe(5 * GIB);
    expect(defaultMemoryBudget(adapter(MIB), 0.25)).toBe(256 * MIB);
  });
});
