// WGSL sources are imported as text (esbuild `text` loader; vitest via a tiny plugin).
declare module '*.wgsl' {
  const source: string;
  export default source;
}
// The CLIP BPE merges shipped with the library (src/assets/sdxl/merges.txt), imported as text too.
declare module '*.txt' {
  const text: string;
  export default text;
}
