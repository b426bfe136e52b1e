// Live mode of the demo page: with the switch on, the image follows the prompt as it is typed
// (pipeline.live(), src/pipeline/live.ts). Keystrokes are sent at most once per measured frame
// time (the last one always goes out), the previous frame stays on the canvas until the next
// arrives, and the webcam or the picked image can drive image-to-image at the form's strength.
// body[data-live] (off, preparing, on) and the canvas's data-request let the browser test wait.

import type { LiveFrame, LiveSession, Pipeline, RgbImage } from '../src/browser.js';
import { rgbaToRgb } from '../src/image.js';

export interface LiveHost {
  /** The pipeline of the form's model choice, loaded if needed. */
  pipeline(signal: AbortSignal): Promise<Pipeline>;
  /** The form's seed, steps, strength and size (for the "width × height above" preset). */
  settings(): { seed?: number; steps?: number; strength?: number; width?: number; height?: number };
  /** The picked input image, decoded, or null. */
  pickedImage(): Promise<RgbImage | null>;
  /** Live is on (true) or off: the page's Generate button waits meanwhile. */
  active(on: boolean): void;
  showError(e: unknown): void;
}

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

export function setupLive(host: LiveHost): void {
  const ui = {
    toggle: $<HTMLInputElement>('live'),
    size: $<HTMLSelectElement>('live-size'),
    input: $<HTMLSelectElement>('live-input'),
    keep: $<HTMLButtonElement>('live-keep'),
    stats: $('live-stats'),
    history: $('history'),
    prompt: $<HTMLTextAreaElement>('prompt'),
    canvas: $<HTMLCanvasElement>('canvas'),
    video: document.createElement('video'),
  };
  let session: LiveSession<Blob> | null = null;
  let controller: AbortController | null = null;
  let shown: LiveFrame<Blob> | null = null;
  /** Processing time of recent frames (ms, smoothed): the least time between two requests. */
  let frameMs = 0;
  let lastSent = -Infinity;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let picked: RgbImage | null = null;

  const setLive = (state: 'off' | 'preparing' | 'on'): void => {
    document.body.dataset.live = state;
    ui.keep.disabled = state !== 'on' || !shown;
  };
  setLive('off');

  async function start(): Promise<void> {
    await stop();
    const abort = (controller = new AbortController());
    setLive('preparing');
    ui.toggle.disabled = true;
    host.active(true);
    try {
      const pipeline = await host.pipeline(abort.signal);
      const form = host.settings();
      const side = ui.size.value === 'form' ? null : Number(ui.size.value);
      const next = pipeline.live({
        width: side ?? form.width ?? 512,
        height: side ?? form.height ?? 512,
        ...(form.seed === undefined ? {} : { seed: form.seed }),
        ...(form.steps === undefined ? {} : { steps: form.steps }),
        ...(form.strength === undefined ? {} : { strength: form.strength }),
      });
      // Compiled before the first keystroke, so typing never waits on a compile.
      await next.ready();
      if (abort.signal.aborted) return void (await next.close());
      session = next;
      void showFrames(next);
      picked = ui.input.value === 'picked' ? await host.pickedImage() : null;
      if (ui.input.value === 'camera') await startCamera();
      setLive('on');
      send();
    } catch (e) {
      await fail(e);
    } finally {
      ui.toggle.disabled = false;
    }
  }

  /** Shows the session's frames as they come (the newest, if the page falls behind) until it
   *  closes; a failed frame (the GPU's error) ends Live with its message. */
  async function showFrames(live: LiveSession<Blob>): Promise<void> {
    try {
      for await (const frame of live.frames()) show(frame);
    } catch (e) {
      if (session === live) await fail(e);
    }
  }

  async function fail(e: unknown): Promise<void> {
    ui.toggle.checked = false;
    await stop();
    host.showError(e);
  }

  async function stop(): Promise<void> {
    controller?.abort();
    controller = null;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    const closing = session;
    session = null;
    for (const track of (ui.video.srcObject as MediaStream | null)?.getTracks() ?? []) track.stop();
    ui.video.srcObject = null;
    await closing?.close();
    setLive('off');
    host.active(false);
  }

  async function startCamera(): Promise<void> {
    ui.video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    ui.video.muted = true;
    await ui.video.play();
  }

  /** The webcam's current picture at the session's size. */
  function cameraImage(width: number, height: number): RgbImage {
    const grab = new OffscreenCanvas(width, height).getContext('2d')!;
    grab.drawImage(ui.video, 0, 0, width, height);
    return rgbaToRgb(width, height, grab.getImageData(0, 0, width, height).data);
  }

  /** Sends the prompt now, or once a frame time has passed since the last request. */
  function schedule(): void {
    if (!session || timer !== null) return;
    const wait = lastSent + frameMs - performance.now();
    if (wait <= 0) send();
    else timer = setTimeout(send, wait);
  }

  function send(): void {
    timer = null;
    if (!session) return;
    lastSent = performance.now();
    const size = sessionSize();
    const image = ui.input.value === 'camera' ? cameraImage(size.width, size.height) : picked;
    const strength = host.settings().strength;
    session.update({ prompt: ui.prompt.value, ...(image ? { image, ...(strength === undefined ? {} : { strength }) } : {}) });
  }

  function sessionSize(): { width: number; height: number } {
    const side = ui.size.value === 'form' ? null : Number(ui.size.value);
    const form = host.settings();
    return { width: side ?? form.width ?? 512, height: side ?? form.height ?? 512 };
  }

  function show(frame: LiveFrame<Blob>): void {
    const t = frame.timings;
    const busy = t.total - t.queue;
    frameMs = frameMs === 0 ? busy : 0.7 * frameMs + 0.3 * busy;
    shown = frame;
    draw(frame.image);
    ui.canvas.dataset.request = String(frame.request);
    ui.canvas.dataset.prompt = frame.prompt;
    const stats = session?.stats();
    const ms = (v: number): string => v.toFixed(0);
    ui.stats.textContent =
      `${ms(t.total)} ms keystroke to frame (queue ${ms(t.queue)}, encode ${ms(t.encode)}, denoise ${ms(t.denoise)}, decode ${ms(t.decode)})` +
      (stats ? ` · ${stats.fps.toFixed(1)} fps · ${stats.frames} frames, ${stats.dropped} dropped` : '');
    $('result-info').textContent = `live: ${frame.image.width}×${frame.image.height}, seed ${frame.image.parameters.seed}, “${frame.prompt}”`;
    $('result').hidden = false;
    ui.keep.disabled = false;
    // The webcam streams: the next picture goes out as soon as this frame is shown.
    if (ui.input.value === 'camera') schedule();
  }

  function draw(image: LiveFrame<Blob>['image'], canvas = ui.canvas): void {
    canvas.width = image.width;
    canvas.height = image.height;
    const rgba = image.rgba();
    canvas.getContext('2d')!.putImageData(new ImageData(rgba.data as Uint8ClampedArray<ArrayBuffer>, rgba.width, rgba.height), 0, 0);
  }

  /** The shown frame into the history strip; clicking it shows it again with its prompt. */
  function keep(): void {
    if (!shown) return;
    const frame = shown;
    const p = frame.image.parameters;
    const item = document.createElement('figure');
    const thumb = item.appendChild(document.createElement('canvas'));
    draw(frame.image, thumb);
    const caption = item.appendChild(document.createElement('figcaption'));
    caption.textContent = `${frame.prompt} · seed ${p.seed} · ${p.steps} step${p.steps === 1 ? '' : 's'}${p.strength === undefined ? '' : ` · strength ${p.strength}`} · ${p.width}×${p.height} · ${frame.timings.total.toFixed(0)} ms`;
    item.title = caption.textContent;
    item.addEventListener('click', () => {
      shown = frame;
      draw(frame.image);
      ui.prompt.value = frame.prompt;
    });
    ui.history.prepend(item);
  }

  ui.toggle.addEventListener('change', () => void (ui.toggle.checked ? start() : stop()));
  // A session's size, seed, steps and strength are fixed: changing one starts another.
  for (const id of ['live-size', 'live-input', 'seed', 'steps', 'strength', 'width', 'height']) {
    $(id).addEventListener('change', () => void (ui.toggle.checked && start()));
  }
  $('image').addEventListener('change', async () => {
    if (!session || ui.input.value !== 'picked') return;
    picked = await host.pickedImage().catch((e: unknown) => (host.showError(e), null));
    send();
  });
  ui.prompt.addEventListener('input', schedule);
  ui.keep.addEventListener('click', keep);
}
