// Node only (src/gpu/node.ts): Dawn's Node binding waits for the GPU by polling. While any of
// its promises is pending (onSubmittedWorkDone, mapAsync, createComputePipelineAsync, …) it
// re-arms `setImmediate`, looked up on the global object each time, around
// wgpuInstanceProcessEvents: a loop that keeps one CPU core busy for the whole wait. On a
// software adapter the CPU is the GPU, and on lavapipe's two cores that loop took a third of the
// compute: a 640-channel 3×3 conv ran in 370 ms while the loop spun and in 235–245 ms with it
// polling once per timer tick (BENCHMARKS.md, "Dawn's wait"). So while a software-adapter
// device is open, a wait's re-arms — Dawn's is an anonymous native function, which JavaScript
// code does not pass — go to setImmediate for its first millisecond (a short wait keeps its
// latency) and then to a 1 ms timer; every other callback goes to the real setImmediate, and
// with no such device open nothing changes.

/** How long a wait polls as Dawn does: a tiny op and its sync took 0.15–0.26 ms so, 1.3 ms with
 *  timer ticks from the start, 0.4 ms with this. */
const SPIN_MS = 1;

let softwareDevices = 0;
let installed = false;
let immediate: typeof setImmediate = globalThis.setImmediate;
/** When the current wait began: a re-arm from outside Dawn's poll starts one (a new promise);
 *  the poll re-arms itself while it waits. */
let waitStart = -Infinity;
let polling = false;
/** Dawn's re-arms waiting on a timer, handed back to setImmediate when the last device goes. */
const waiting = new Map<NodeJS.Timeout, () => void>();

/** Whether `callback` is the kind of function Dawn's binding passes: native and anonymous. */
function isDawnPoll(callback: unknown): boolean {
  return typeof callback === 'function' && callback.name === '' && Function.prototype.toString.call(callback).includes('[native code]');
}

function install(): void {
  if (installed) return;
  installed = true;
  immediate = globalThis.setImmediate;
  const throttled = (callback: (...args: unknown[]) => void, ...args: unknown[]): unknown => {
    if (softwareDevices === 0 || !isDawnPoll(callback)) return immediate(callback, ...args);
    const now = performance.now();
    if (!polling) waitStart = now;
    const poll = (): void => {
      polling = true;
      try {
        callback(...args);
      } finally {
        polling = false;
      }
    };
    if (now - waitStart < SPIN_MS) return immediate(poll);
    const timer = setTimeout(() => {
      waiting.delete(timer);
      poll();
    }, 1);
    waiting.set(timer, () => immediate(poll));
    return timer;
  };
  // What util.promisify(setImmediate) uses, kept working.
  Object.defineProperties(throttled, Object.getOwnPropertyDescriptors(immediate));
  globalThis.setImmediate = throttled as typeof setImmediate;
}

/** Polls Dawn by timer ticks, past each wait's first millisecond, while the returned release has
 *  not been called (one per open software-adapter device). */
export function throttleDawnPolling(): () => void {
  install();
  softwareDevices += 1;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    softwareDevices -= 1;
    if (softwareDevices > 0) return;
    for (const [timer, resume] of waiting) {
      clearTimeout(timer);
      resume();
    }
    waiting.clear();
  };
}
