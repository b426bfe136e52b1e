// What the Node and the browser entries both export, besides loadPipeline and its options.

export type { GenerationParameters, RgbaImage, RgbImage } from './image.js';
export type { ModelFs } from './io/model-folder.js';
export type { LoadOptions } from './load.js';
export type { LoraOption } from './models/lora.js';
export type { ComputeDType, GenerateOptions, ImageToImageOptions, PipelineOptions, Preflight, ProgressEvent, Stage, VaeSource, WeightVariant } from './pipeline/options.js';
export type { SchedulerName, TimestepSpacing } from './pipeline/scheduler.js';
export type { TunedCall, TuneOptions, TuneProgress, TuneResult } from './pipeline/tune.js';
export type { AdapterIdentity, TunedEntry, TuningTable } from './gpu/tuning-table.js';
export type { LiveFrame, LiveOptions, LiveRequest, LiveSession, LiveStats, LiveTimings } from './pipeline/live.js';
export { GpuError, NetworkError, NonFiniteError, UsageError } from './errors.js';
export { NoAdapterError } from './gpu/runtime.js';
export { GeneratedImage } from './image.js';
export { readPngText } from './io/png-encode.js';
export { SdxlTurboPipeline } from './pipeline/sdxl-turbo.js';
