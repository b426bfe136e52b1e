// Terminal progress for the CLI: one bar per stage of the library's progress stream (cli-progress)
// when the stream is a terminal, nothing otherwise (logs, pipes and CI stay clean).

import cliProgress from 'cli-progress';
import type { ProgressEvent } from '../pipeline/options.js';

/** process.stderr, or any stream (drawn on only when it says it is a TTY). */
export type TerminalStream = NodeJS.WritableStream & { readonly isTTY?: boolean };

const LABELS: Record<ProgressEvent['stage'], string> = {
  download: 'downloading',
  load: 'loading weights',
  compile: 'compiling',
  'encode-prompt': 'encoding prompt',
  'encode-image': 'encoding image',
  denoise: 'denoising',
  decode: 'decoding',
};

const MIB = 2 ** 20;

export class ProgressReporter {
  private bar: cliProgress.SingleBar | null = null;
  private stage: ProgressEvent['stage'] | null = null;

  constructor(private readonly stream: TerminalStream) {}

  update(e: ProgressEvent): void {
    if (!this.stream.isTTY) return;
    // Download and load count bytes (shown in MiB) and name the file or network in flight.
    const bytes = e.stage === 'download' || e.stage === 'load';
    const detail = e.stage === 'download' ? e.file : e.stage === 'load' ? e.component : '';
    const [value, total] = bytes ? [Math.round(e.done / MIB), Math.max(1, Math.round(e.total / MIB))] : [e.done, e.total];
    if (e.stage !== this.stage) {
      this.done();
      this.stage = e.stage;
      this.bar = new cliProgress.SingleBar(
        {
          stream: this.stream,
          format: `${LABELS[e.stage].padEnd(16)} [{bar}] {value}/{total}${bytes ? ' MiB' : ''} {duration_formatted} {detail}`,
          hideCursor: true,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, value, { detail });
    }
    this.bar!.setTotal(total);
    this.bar!.update(value, { detail });
  }

  /** Ends the current bar (before other output, and always before exit: it holds a timer). */
  done(): void {
    this.bar?.stop();
    this.bar = null;
    this.stage = null;
  }
}
