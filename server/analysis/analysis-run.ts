import { Mutex } from '../../shared/util/mutex.ts';
import type { MetricProviderResolver } from '../metricproviders/provider-resolver.ts';
import { assessMetric, assessRun, ERROR_RETRY_INTERVAL_MS, type RunAssessment } from './analysis-assessment.ts';
import type { AnalysisMetric } from './metric-definition.ts';
import type { Measurement } from './measurement.ts';
import type { Scheduler } from './scheduler.ts';
import { measurementProvider, takeMeasurement, type MeasurementContext } from './take-measurement.ts';

/**
 * One analysis run: every metric measured at its interval until its count of measurements without
 * Error (or until a limit decides it), on an injected scheduler; an Error is measured again after
 * the interval, or after ERROR_RETRY_INTERVAL_MS (10 s, Argo's) for a metric without one. Each
 * measurement is handed to onMeasurement (the controller records it in the decision log) before
 * the next is scheduled; the run ends with onComplete once assessRun leaves Running. A run can
 * resume from the measurements a previous process recorded: counts continue (Errors not counted),
 * and the next measurement is due one interval (or the Error retry) after the last one finished.
 * With holdOff, a measurement on one of its providers that falls due before holdOff.until is
 * taken at holdOff.until instead (never later), and says so.
 */
export interface AnalysisHoldOff {
  /** Measurements due before this wait for it; due at or after it, they run when due. */
  readonly until: Date;
  /** The providers (by name: `prometheus`) whose measurements wait. */
  readonly providers: readonly string[];
  /** Why they wait, for the measurement's message and its `waited` (one line). */
  readonly reason: string;
}

export interface AnalysisRunOptions {
  readonly metrics: readonly AnalysisMetric[];
  readonly providers: MetricProviderResolver;
  readonly scheduler: Scheduler;
  readonly context: Omit<MeasurementContext, 'now' | 'signal'>;
  /** When the run started (initialDelay counts from here); defaults to now. */
  readonly startedAt?: Date;
  readonly previous?: readonly Measurement[];
  /** The controller's start-up grace (see RolloutControllerOptions.startupGraceMs). */
  readonly holdOff?: AnalysisHoldOff;
  /** A measurement waits for holdOff (called when it is scheduled so). */
  readonly onHeld?: (metric: string, dueAt: Date, until: Date) => void;
  readonly onMeasurement?: (measurement: Measurement, assessment: RunAssessment) => void | Promise<void>;
  readonly onComplete?: (assessment: RunAssessment) => void | Promise<void>;
  readonly onError?: (error: unknown) => void;
}

export class AnalysisRun {
  readonly #options: AnalysisRunOptions;
  readonly #measurements: Measurement[];
  readonly #startedAt: Date;
  readonly #cancels = new Map<string, () => void>();
  readonly #abort = new AbortController();
  readonly #mutex = new Mutex();
  #finished: RunAssessment | undefined;
  #resolveDone!: (assessment: RunAssessment) => void;
  readonly done: Promise<RunAssessment>;

  constructor(options: AnalysisRunOptions) {
    this.#options = options;
    this.#measurements = [...(options.previous ?? [])];
    this.#startedAt = options.startedAt ?? options.scheduler.now();
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  get measurements(): readonly Measurement[] {
    return this.#measurements;
  }

  assessment(): RunAssessment {
    return this.#finished ?? assessRun(this.#options.metrics, this.#measurements);
  }

  start(): void {
    const assessment = assessRun(this.#options.metrics, this.#measurements);
    if (assessment.phase !== 'Running') {
      void this.#mutex.run(() => this.#complete(assessment));
      return;
    }
    for (const metric of this.#options.metrics) this.#scheduleNext(metric);
  }

  /** Stops measuring; no further callbacks. */
  stop(): void {
    if (!this.#finished) {
      this.#finished = { ...this.assessment(), message: 'stopped' };
      this.#resolveDone(this.#finished);
    }
    for (const cancel of this.#cancels.values()) cancel();
    this.#cancels.clear();
    this.#abort.abort();
  }

  #scheduleNext(metric: AnalysisMetric): void {
    if (this.#finished) return;
    const own = this.#measurements.filter((m) => m.metric === metric.name);
    if (assessMetric(metric, own).phase !== 'Running') return;
    const last = own.at(-1);
    // As Argo: the next one is due an interval after the last one finished; an Error (which does
    // not count towards `count`) of a metric without an interval is retried after 10 s.
    const dueAt = last ? new Date(last.finishedAt).getTime() + (metric.intervalMs ?? (last.phase === 'Error' ? ERROR_RETRY_INTERVAL_MS : 0)) : this.#startedAt.getTime() + metric.initialDelayMs;
    const now = this.#options.scheduler.now().getTime();
    const holdOff = this.#options.holdOff;
    // Bounded by construction: a held measurement runs at holdOff.until, a fixed time, whatever happens.
    const held = holdOff !== undefined && now < holdOff.until.getTime() && dueAt < holdOff.until.getTime() && holdOff.providers.includes(measurementProvider(metric, this.#options.providers).name) ? holdOff : undefined;
    const runAt = held ? held.until.getTime() : dueAt;
    if (held) this.#options.onHeld?.(metric.name, new Date(dueAt), held.until);
    const cancel = this.#options.scheduler.schedule(Math.max(0, runAt - now), () => {
      this.#cancels.delete(metric.name);
      void this.#measure(metric, own.length, held && { dueAt: new Date(dueAt), holdOff: held });
    });
    this.#cancels.set(metric.name, cancel);
  }

  async #measure(metric: AnalysisMetric, index: number, held?: { dueAt: Date; holdOff: AnalysisHoldOff }): Promise<void> {
    if (this.#finished) return;
    const taken = await takeMeasurement(metric, index, this.#options.providers, {
      ...this.#options.context,
      now: () => this.#options.scheduler.now(),
      signal: this.#abort.signal,
    });
    const measurement: Measurement = held ? withWait(taken, held.dueAt, held.holdOff) : taken;
    await this.#mutex.run(async () => {
      if (this.#finished) return;
      this.#measurements.push(measurement);
      const assessment = assessRun(this.#options.metrics, this.#measurements);
      try {
        await this.#options.onMeasurement?.(measurement, assessment);
      } catch (error) {
        this.#options.onError?.(error);
        this.stop();
        return;
      }
      if (assessment.phase !== 'Running') {
        await this.#complete(assessment);
        return;
      }
      this.#scheduleNext(metric);
    });
  }

  async #complete(assessment: RunAssessment): Promise<void> {
    if (this.#finished) return;
    this.#finished = assessment;
    for (const cancel of this.#cancels.values()) cancel();
    this.#cancels.clear();
    try {
      await this.#options.onComplete?.(assessment);
    } catch (error) {
      this.#options.onError?.(error);
    }
    this.#resolveDone(assessment);
  }
}

/**
 * A measurement taken late for the start-up grace: its message says when it was due, until when it
 * was held, and why (the time before the takeover, while no server ran, is not the grace's).
 */
function withWait(measurement: Measurement, dueAt: Date, holdOff: AnalysisHoldOff): Measurement {
  return {
    ...measurement,
    waited: { dueAt: dueAt.toISOString(), until: holdOff.until.toISOString(), reason: holdOff.reason },
    message: `${measurement.message} (due at ${dueAt.toISOString()}, held until ${holdOff.until.toISOString()}: ${holdOff.reason})`,
  };
}
