// Terminal progress for the CLI: one bar per stage (cli-progress) when the stream is a
// terminal, nothing otherwise (logs, pipes and CI stay clean).

import cliProgress from 'cli-progress';
import type { ProgressEvent } from '../pipeline/options.js';
import type { DownloadProgress } from './hub.js';

/** process.stderr, or any stream (drawn on only when it says it is a TTY). */
export type TerminalStream = NodeJS.WritableStream & { readonly isTTY?: boolean };

const LABELS: Record<ProgressEvent['stage'], string> = {
  load: 'loading weights',
  'encode-prompt': 'encoding prompt',
  'encode-image': 'encoding image',
  denoise: 'denoising',
  decode: 'decoding',
};

export class ProgressReporter {
  private bar: cliProgress.SingleBar | null = null;
  private label = '';

  constructor(private readonly stream: TerminalStream) {}

  update(e: ProgressEvent): void {
    this.show(LABELS[e.stage], e.done, e.total, '{value}/{total}');
  }

  download(e: DownloadProgress): void {
    this.show(`downloading ${e.file}`, Math.round(e.bytes / 2 ** 20), Math.max(1, Math.round(e.total / 2 ** 20)), '{value}/{total} MiB');
  }

  private show(label: string, value: number, total: number, units: string): void {
    if (!this.stream.isTTY) return;
    if (label !== this.label) {
      this.done();
      this.label = label;
      this.bar = new cliProgress.SingleBar(
        { stream: this.stream, format: `${label.padEnd(34)} [{bar}] ${units} {duration_formatted}`, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, value);
    }
    this.bar!.setTotal(total);
    this.bar!.update(value);
  }

  /** Ends the current bar (before other output, and always before exit: it holds a timer). */
  done(): void {
    this.bar?.stop();
    this.bar = null;
    this.label = '';
  }
}
