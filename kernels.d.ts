// WGSL sources are imported as text (esbuild `text` loader; vitest via a tiny plugin).
declare module '*.wgsl' {
  const source: string;
  export default source;
}
