// Small helpers for the benchmark tools' reports.

export { median } from '../src/gpu/timing.js';
export { markdownTable } from '../src/markdown.js';

