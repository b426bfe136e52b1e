// Live sessions: the image follows the newest request (a prompt as it is typed, a webcam frame),
// in Node and the browser alike. Each frame is an ordinary generate() / imageToImage() of the
// pipeline (the same draws from the same seed, so a frame equals a one-shot run of its request)
// with two differences: a newer request cancels the running frame at its next stage boundary
// (after the text encoders, between UNet steps, before the VAE), and the prompt embeddings stay
// cached per prompt, so editing back to an earlier prompt skips the encoders.
//
// Only the newest request matters: a request waiting for the GPU is replaced by the next one
// (counted as dropped), and a consumer of frames() that falls behind gets the newest frame.
// A frame whose denoising is done is let finish by default (finishDecode): only the VAE decode
// is left, and cancelling it would leave a typist without any frame until they pause.

import { usage } from '../errors.js';
import type { RgbImage } from '../image.js';
import type { Tensor } from '../tensor.js';
import type { RunShape } from './dry-run.js';
import type { Embeddings, PromptCache } from './generation.js';
import { checkImage, checkInteger, checkSeed, checkSize, checkStrength, DEFAULT_SIZE, DEFAULT_STRENGTH, type GenerateOptions, type ImageToImageOptions, MAX_STEPS } from './options.js';
import type { GenerateResult } from './sdxl-turbo.js';

export interface LiveOptions {
  /** Frame size (default 512²). */
  readonly width?: number;
  readonly height?: number;
  /** One seed for every frame (default: one drawn at random when the session opens), so the
   *  picture changes with the words, not with the noise. */
  readonly seed?: number | bigint;
  /** Denoising steps (default 1; image-to-image: the fewest of which the strength keeps one). */
  readonly steps?: number;
  /** Image-to-image strength of requests with an image that give none (default 0.5). */
  readonly strength?: number;
  readonly guidanceScale?: number;
  readonly negativePrompt?: string;
  /** A newer request lets the running frame finish once only its VAE decode is left (default
   *  true); false cancels it there too. */
  readonly finishDecode?: boolean;
}

export interface LiveRequest {
  readonly prompt: string;
  /** Image-to-image from this image (resized to the session's size). */
  readonly image?: RgbImage;
  readonly strength?: number;
}

/** Milliseconds: `queue` from update() to the frame's start, the stages, `total` from update()
 *  to the frame. */
export interface LiveTimings {
  readonly queue: number;
  readonly encode: number;
  readonly denoise: number;
  readonly decode: number;
  readonly total: number;
}

export interface LiveFrame<Png = Uint8Array> {
  readonly image: GenerateResult<Png>['images'][number];
  /** The sequence number update() returned for the request this frame shows. */
  readonly request: number;
  readonly prompt: string;
  readonly timings: LiveTimings;
}

export interface LiveStats {
  /** Frames delivered. */
  readonly frames: number;
  /** Requests that got no frame: replaced while waiting, or cancelled while running. */
  readonly dropped: number;
  /** Frames per second of GPU-busy time (idle time between requests does not count). */
  readonly fps: number;
}

/** What a session needs of its pipeline (SdxlTurboPipeline.live() supplies it). */
export interface LiveRunner<Png> {
  /** generate() (imageToImage() when `options.image` is set) with `cache` for the prompt embeddings. */
  run(options: GenerateOptions | ImageToImageOptions, cache: PromptCache): Promise<GenerateResult<Png>>;
  /** Compiles every pipeline a run of `shape` dispatches (a UsageError if it does not fit the device). */
  compile(shape: RunShape): Promise<void>;
  /** A value that changes when the text encoders' weights do (setLoras): cached embeddings of
   *  other weights are dropped. */
  encoderWeights(): unknown;
}

/** Prompts whose embeddings a session keeps (77×2048 + 1280 values each: 0.3 MB in f16). */
export const LIVE_PROMPT_CACHE = 32;

interface Pending {
  readonly request: LiveRequest;
  readonly sequence: number;
  readonly at: number;
}

interface Subscriber<Png> {
  latest: LiveFrame<Png> | null;
  wake: Array<() => void>;
}

export class LiveSession<Png = Uint8Array> {
  /** Called with every frame (besides the frames() iterators). Method syntax keeps Png
   *  covariant, so a pipeline of Blobs is still a pipeline of unknown PNGs. */
  onFrame?(frame: LiveFrame<Png>): void;
  private readonly cache = new PromptLru(LIVE_PROMPT_CACHE);
  private readonly settings: { width: number; height: number; seed: number | bigint; steps: number | undefined; strength: number; guidanceScale: number | undefined; negativePrompt: string | undefined };
  private readonly finishDecode: boolean;
  private sequence = 0;
  private pending: Pending | null = null;
  private running: { readonly controller: AbortController; decoding: boolean } | null = null;
  private loop: Promise<void> | null = null;
  private readonly subscribers = new Set<Subscriber<Png>>();
  private frameCount = 0;
  private dropped = 0;
  private busyMs = 0;
  private closing: Promise<void> | null = null;
  private failure: { error: unknown } | null = null;
  private compiled: Promise<void> | null = null;

  constructor(
    options: LiveOptions,
    private readonly runner: LiveRunner<Png>,
  ) {
    const steps = options.steps === undefined ? undefined : checkInteger('steps', options.steps, 1, MAX_STEPS);
    const guidanceScale = options.guidanceScale;
    if (guidanceScale !== undefined && !(typeof guidanceScale === 'number' && Number.isFinite(guidanceScale) && guidanceScale >= 0)) {
      usage(`guidanceScale must be a finite number ≥ 0 (0 or ≤ 1: off), got ${JSON.stringify(guidanceScale)}`, 'guidanceScale');
    }
    if (options.negativePrompt !== undefined && typeof options.negativePrompt !== 'string') usage(`negativePrompt must be a string, got ${JSON.stringify(options.negativePrompt)}`, 'negativePrompt');
    this.settings = {
      width: checkSize('width', options.width ?? DEFAULT_SIZE),
      height: checkSize('height', options.height ?? DEFAULT_SIZE),
      seed: options.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : checkSeed(options.seed),
      steps,
      strength: checkStrength(options.strength ?? DEFAULT_STRENGTH),
      guidanceScale,
      negativePrompt: options.negativePrompt,
    };
    this.finishDecode = options.finishDecode ?? true;
  }

  /** The session's seed (drawn when the options gave none). */
  get seed(): number | bigint {
    return this.settings.seed;
  }

  /**
   * Compiles the pipelines of the session's text-to-image frames (the first frame would
   * otherwise), so the first keystroke does not stall; rejects with a UsageError when the size
   * does not fit the device. Image-to-image frames compile theirs at the first one.
   */
  ready(): Promise<void> {
    const { width, height, steps, guidanceScale } = this.settings;
    this.compiled ??= this.runner.compile({ width, height, batch: 1, steps: steps ?? 1, imageToImage: false, guidance: (guidanceScale ?? 0) > 1 });
    return this.compiled;
  }

  /**
   * Asks for a frame of `request`; returns its sequence number (1, 2, …), which the frame
   * reports. A request still waiting is replaced; a running frame is cancelled at its next stage
   * boundary (see finishDecode). Throws a UsageError for a bad request or after close().
   */
  update(request: LiveRequest): number {
    if (this.closing) usage('update() after close(): open another session with live()');
    if (this.failure) throw this.failure.error;
    if (typeof request?.prompt !== 'string') usage(`prompt must be a string, got ${JSON.stringify(request?.prompt)}`, 'prompt');
    if (request.image !== undefined) checkImage(request.image);
    if (request.strength !== undefined) {
      if (request.image === undefined) usage('strength needs image (image-to-image)', 'strength');
      checkStrength(request.strength);
    }
    if (this.pending) this.dropped++;
    this.pending = { request, sequence: ++this.sequence, at: performance.now() };
    if (this.running && !(this.finishDecode && this.running.decoding)) this.running.controller.abort();
    this.pump();
    return this.sequence;
  }

  /** The frames from now on; a consumer that falls behind gets the newest. Ends at close(),
   *  throws the error that ended the session (a GpuError). */
  frames(): AsyncIterableIterator<LiveFrame<Png>> {
    const sub: Subscriber<Png> = { latest: null, wake: [] };
    this.subscribers.add(sub);
    const done = { done: true, value: undefined } as const;
    const iterator: AsyncIterableIterator<LiveFrame<Png>> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        for (;;) {
          if (sub.latest) {
            const value = sub.latest;
            sub.latest = null;
            return { done: false, value };
          }
          if (this.failure) throw this.failure.error;
          if (this.closing || !this.subscribers.has(sub)) return done;
          await new Promise<void>((resolve) => sub.wake.push(resolve));
        }
      },
      return: async () => {
        this.subscribers.delete(sub);
        sub.wake.splice(0).forEach((wake) => wake());
        return done;
      },
    };
    return iterator;
  }

  stats(): LiveStats {
    return { frames: this.frameCount, dropped: this.dropped, fps: this.busyMs > 0 ? (1000 * this.frameCount) / this.busyMs : 0 };
  }

  /** Cancels the running frame, frees the cached embeddings and ends the iterators; the
   *  pipeline stays loaded. Calling it again does nothing more. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.pending) this.dropped++;
      this.pending = null;
      this.running?.controller.abort();
      await this.loop;
      this.cache.clear();
      this.wakeAll();
    })();
    return this.closing;
  }

  private pump(): void {
    if (this.loop || !this.pending || this.closing) return;
    this.loop = (async () => {
      try {
        while (this.pending && !this.closing && !this.failure) {
          const next = this.pending;
          this.pending = null;
          await this.render(next);
        }
      } catch (e) {
        // An onFrame that throws ends the session as a failed frame would.
        this.fail(e);
      } finally {
        this.loop = null;
      }
    })();
  }

  private async render(p: Pending): Promise<void> {
    const controller = new AbortController();
    const running = { controller, decoding: false };
    this.running = running;
    const started = performance.now();
    const { width, height, seed, steps, strength, guidanceScale, negativePrompt } = this.settings;
    const options: GenerateOptions = {
      prompt: p.request.prompt,
      width,
      height,
      seed,
      ...(steps === undefined ? {} : { steps }),
      ...(guidanceScale === undefined ? {} : { guidanceScale }),
      ...(negativePrompt === undefined ? {} : { negativePrompt }),
      signal: controller.signal,
      onProgress: (e) => {
        if (e.stage === 'denoise' && e.done === e.total) running.decoding = true;
      },
    };
    this.cache.weights(this.runner.encoderWeights());
    let result: GenerateResult<Png>;
    try {
      result = await this.runner.run(p.request.image ? { ...options, image: p.request.image, strength: p.request.strength ?? strength } : options, this.cache);
    } catch (e) {
      if (controller.signal.aborted) this.dropped++;
      else this.fail(e);
      return;
    } finally {
      this.busyMs += performance.now() - started;
      this.running = null;
    }
    if (this.closing) {
      this.dropped++;
      return;
    }
    const t = result.timings;
    const frame: LiveFrame<Png> = {
      image: result.images[0]!,
      request: p.sequence,
      prompt: p.request.prompt,
      timings: {
        queue: started - p.at,
        encode: (t['encode-prompt'] ?? 0) + (t['encode-image'] ?? 0),
        denoise: t.denoise ?? 0,
        decode: t.decode ?? 0,
        total: performance.now() - p.at,
      },
    };
    this.frameCount++;
    for (const sub of this.subscribers) sub.latest = frame;
    this.wakeAll();
    this.onFrame?.(frame);
  }

  private fail(error: unknown): void {
    this.failure = { error };
    this.pending = null;
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const sub of this.subscribers) sub.wake.splice(0).forEach((wake) => wake());
  }
}

/** The embeddings of the last `capacity` prompts used (keyed by both tokenizers' ids). */
class PromptLru implements PromptCache {
  private readonly entries = new Map<string, Embeddings<Tensor>>();
  private encoderWeights: unknown = undefined;

  constructor(private readonly capacity: number) {}

  /** The encoders' weights the next embeddings come from: all are dropped when they change. */
  weights(encoderWeights: unknown): void {
    if (encoderWeights !== this.encoderWeights) this.clear();
    this.encoderWeights = encoderWeights;
  }

  async embeddings(ids: readonly [Int32Array, Int32Array], encode: () => Promise<Embeddings<Tensor>>): Promise<Embeddings<Tensor>> {
    const key = `${ids[0].join()};${ids[1].join()}`;
    const hit = this.entries.get(key);
    if (hit) {
      // Most recently used last: the Map's order is the eviction order.
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const made = await encode();
    this.entries.set(key, made);
    for (const [old, e] of this.entries) {
      if (this.entries.size <= this.capacity) break;
      this.entries.delete(old);
      release(e);
    }
    return made;
  }

  clear(): void {
    for (const e of this.entries.values()) release(e);
    this.entries.clear();
  }
}

function release(e: Embeddings<Tensor>): void {
  e.promptEmbeds.release();
  e.pooled.release();
}
