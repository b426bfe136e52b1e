// The default GPU memory budget of a browser page (maxMemory when the user set none). WebGPU
// does not tell a page how much memory its GPU has, so the budget is derived, conservatively,
// from what the page can see (README, "GPU memory in the browser"):
//
//   RAM    = navigator.deviceMemory GiB where the browser reports it (Chromium: rounded down to a
//            power of two, at most 8), else 4 GiB;
//   share  = RAM / 2 (RAM / 4 on a software adapter, whose buffers are the page's own memory):
//            on unified memory (integrated GPUs, Apple silicon, phones) GPU buffers come out of
//            RAM beside the OS and other tabs; a discrete card is assumed to hold at least that;
//   budget = max(share, min(maxBufferSize, RAM)), rounded down to 256 MiB: an adapter that offers
//            one buffer of maxBufferSize bytes has that much memory (software adapters excepted).
//
// maxStorageBufferBindingSize bounds each binding, not the total: the preflight checks it apart.

import { type AdapterInfoLike, isSoftwareAdapter } from '../gpu/software-adapter.js';

/** What the rule reads of a GPUAdapter (WebGPU's own type satisfies it). */
export interface BudgetAdapter {
  readonly limits: { readonly maxBufferSize: number };
  readonly info?: AdapterInfoLike;
}

const GIB = 2 ** 30;
const STEP = 256 * 2 ** 20;
/** RAM assumed where the browser does not report it (Safari, Firefox). */
const UNKNOWN_RAM_GIB = 4;

/** The default budget in bytes for `adapter`, with `deviceMemory` GiB of RAM (default the
 *  page's navigator.deviceMemory; undefined where the browser does not say). */
export function defaultMemoryBudget(adapter: BudgetAdapter, deviceMemory = (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory): number {
  const ram = (deviceMemory !== undefined && Number.isFinite(deviceMemory) && deviceMemory > 0 ? deviceMemory : UNKNOWN_RAM_GIB) * GIB;
  const software = isSoftwareAdapter(adapter.info);
  const share = software ? ram / 4 : ram / 2;
  const budget = software ? share : Math.max(share, Math.min(adapter.limits.maxBufferSize, ram));
  return Math.max(STEP, Math.floor(budget / STEP) * STEP);
}
