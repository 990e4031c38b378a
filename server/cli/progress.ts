import cliProgress from 'cli-progress';
import { PHASES, type Phase, type ProgressEvent } from '../pruning/progress-events.ts';

export interface PhaseProgress {
  update(event: ProgressEvent): void;
  stop(): void;
}

/**
 * On a TTY, one progress bar per phase (train, measure, rebuild, retrain, baselines, export);
 * otherwise one plain line whenever a phase finishes, so logs and CI output stay readable.
 */
export function createPhaseProgress(stream: NodeJS.WriteStream = process.stderr): PhaseProgress {
  return stream.isTTY ? new TtyProgress(stream) : new PlainProgress(stream);
}

class TtyProgress implements PhaseProgress {
  private readonly multibar: cliProgress.MultiBar;
  private readonly bars = new Map<Phase, cliProgress.SingleBar>();

  constructor(stream: NodeJS.WriteStream) {
    this.multibar = new cliProgress.MultiBar(
      {
        stream,
        clearOnComplete: false,
        hideCursor: true,
        format: ' {phase} |{bar}| {value}/{total} {detail}',
      },
      cliProgress.Presets.shades_classic,
    );
  }

  update(event: ProgressEvent): void {
    let bar = this.bars.get(event.phase);
    if (!bar) {
      bar = this.multibar.create(event.total, 0, { phase: event.phase.padEnd(9), detail: '' });
      this.bars.set(event.phase, bar);
    }
    bar.setTotal(event.total);
    bar.update(event.done, { detail: event.detail ?? '' });
  }

  stop(): void {
    this.multibar.stop();
  }
}

class PlainProgress implements PhaseProgress {
  private readonly finished = new Set<Phase>();
  /** Phases run one after another: each one's time runs from the end of the one before. */
  private since = performance.now();

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(event: ProgressEvent): void {
    if (event.done < event.total || this.finished.has(event.phase)) return;
    this.finished.add(event.phase);
    const now = performance.now();
    const index = PHASES.indexOf(event.phase) + 1;
    this.stream.write(`[${index}/${PHASES.length}] ${event.phase} done (${((now - this.since) / 1000).toFixed(1)} s)\n`);
    this.since = now;
  }

  stop(): void {}
}
