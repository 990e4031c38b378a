import cliProgress from 'cli-progress';
import { PHASES, type Phase, type ProgressEvent } from '../pruning/progress-events.ts';
import { drawsBars } from './terminal.ts';

export interface PhaseProgress {
  update(event: ProgressEvent): void;
  stop(): void;
}

/**
 * On a terminal (not TERM=dumb), one progress bar per phase (train, measure, rebuild, retrain, baselines, export);
 * otherwise one plain line whenever a phase finishes, and one every half minute of a phase still
 * running (its count so far), so logs and CI output stay readable and a long phase is not silent.
 */
export function createPhaseProgress(stream: NodeJS.WriteStream = process.stderr, now: () => number = () => performance.now()): PhaseProgress {
  return drawsBars(stream) ? new TtyProgress(stream) : new PlainProgress(stream, now);
}

/** How often a plain line says how far a phase still running has got. */
export const PLAIN_PROGRESS_EVERY_MS = 30_000;

class TtyProgress implements PhaseProgress {
  private readonly multibar: cliProgress.MultiBar;
  private readonly bars = new Map<Phase, cliProgress.SingleBar>();
  private stopped = false;

  constructor(stream: NodeJS.WriteStream) {
    this.multibar = new cliProgress.MultiBar(
      {
        stream,
        clearOnComplete: false,
        hideCursor: true,
        format: ' {phase} |{bar}| {value}/{total} {detail}',
        // Line wrapping is off while bars are drawn: a bar wider than the terminal lost its count.
        barsize: barSizeFor(stream.columns),
      },
      cliProgress.Presets.shades_classic,
    );
  }

  update(event: ProgressEvent): void {
    if (this.stopped) return;
    let bar = this.bars.get(event.phase);
    if (!bar) {
      bar = this.multibar.create(event.total, 0, { phase: event.phase.padEnd(9), detail: '' });
      this.bars.set(event.phase, bar);
    }
    bar.setTotal(event.total);
    bar.update(event.done, { detail: event.detail ?? '' });
  }

  /** Idempotent: a second stop would draw every bar again below the first. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.multibar.stop();
  }
}

/**
 * The bar's width on a terminal `columns` wide: 40 where it fits, narrower on a narrow terminal so
 * the phase, the count and a short detail (about 40 characters besides the bar) still show.
 */
export function barSizeFor(columns: number | undefined): number {
  return Math.max(10, Math.min(40, (columns || 80) - 40));
}

class PlainProgress implements PhaseProgress {
  private readonly finished = new Set<Phase>();
  /** Phases run one after another: each one's time runs from the end of the one before. */
  private since: number;
  /** When the last line was written. */
  private lastLine: number;
  /** Whether an event came yet. */
  private begun = false;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly clock: () => number,
  ) {
    this.since = this.lastLine = clock();
  }

  update(event: ProgressEvent): void {
    if (this.finished.has(event.phase)) return;
    const now = this.clock();
    // The run's first event at 0 is its start (reading the data and loading the backend came before): the first phase's time runs from it.
    if (!this.begun) {
      this.begun = true;
      if (event.done === 0) this.since = now;
    }
    const index = PHASES.indexOf(event.phase) + 1;
    if (event.done < event.total) {
      if (now - this.lastLine < PLAIN_PROGRESS_EVERY_MS) return;
      this.lastLine = now;
      this.stream.write(`[${index}/${PHASES.length}] ${event.phase} ${event.done}/${event.total}${event.detail ? ` ${event.detail}` : ''} (${((now - this.since) / 1000).toFixed(0)} s so far)\n`);
      return;
    }
    this.finished.add(event.phase);
    this.lastLine = now;
    // An earlier phase that never ran (the baselines, when turned off) is named as skipped rather
    // than leaving a gap in the count.
    PHASES.slice(0, index - 1).forEach((phase, skipped) => {
      if (this.finished.has(phase)) return;
      this.finished.add(phase);
      this.stream.write(`[${skipped + 1}/${PHASES.length}] ${phase} skipped\n`);
    });
    this.stream.write(`[${index}/${PHASES.length}] ${event.phase} done (${((now - this.since) / 1000).toFixed(1)} s)\n`);
    this.since = now;
  }

  stop(): void {}
}
