import cliProgress from 'cli-progress';
import { printable } from '../rollout/operator-text.ts';
import { ACTIVATE_EVERYWHERE } from '../rollout/rollout-state-machine.ts';
import { drawsBars } from './terminal.ts';

/** A rollout as the Rollouts gRPC service sends it. */
export interface GrpcRollout {
  id: string;
  model: string;
  candidate_version: string;
  previous_production: string;
  phase: string;
  terminal: boolean;
  step_index: number;
  step_count: number;
  step_stage: string;
  current_step: string;
  weight: number;
  devices: { total: number; candidate: number; delivered: number; pending: number; retrying: number; unreachable: number; refused: number; reassigned?: number };
  pause_message: string;
  /** Paused: why, since and until when ('' for none); absent from servers before these fields. */
  pause_reason?: string;
  pause_since?: string;
  pause_until?: string;
  outcome_status: string;
  outcome_reason: string;
  /** Ended: when ('' while it runs); absent from servers before this field. */
  outcome_at?: string;
  revision: string;
  created_at: string;
  updated_at: string;
  /** StartRollout only. */
  warnings?: string[];
}

export interface GrpcDecision {
  id: string;
  at: string;
  kind: string;
  step_index: number;
  verdict: string;
  message: string;
  by: string;
  measurement_json: string;
}

/**
 * `ro-1a2b  wine 2  Progressing  step 3/7 (analyzing)  weight 25%  devices 5/20 delivered, 2 being sent, 1 unreachable, 1 refused`.
 * Those still being sent (or retried) are counted: just after a rollback, "0/5 delivered" alone read as if nothing had happened.
 */
export function rolloutLine(r: GrpcRollout): string {
  const step = r.terminal ? `${r.step_count} step${r.step_count === 1 ? '' : 's'}` : `step ${Math.min(r.step_index + 1, r.step_count)}/${r.step_count} (${r.step_stage}${r.current_step ? `: ${r.current_step}` : ''})`;
  const outcome = r.outcome_status ? `  ${r.outcome_status}: ${r.outcome_reason}` : r.pause_message ? `  ${r.pause_message}` : '';
  // What "delivered" counts is the model each device should run now: while the candidate is
  // activated everywhere that is activation (devices that only installed it are not counted yet).
  const delivered = !r.terminal && r.current_step === ACTIVATE_EVERYWHERE ? 'activated' : 'delivered';
  // A finished rollout's devices no step reached (sent nothing, they run what they ran), counted, or the counts do not add up.
  const d = r.devices;
  const untouched = r.terminal ? d.total - d.delivered - d.pending - d.retrying - d.unreachable - d.refused - (d.reassigned ?? 0) : 0;
  // Escaped: reasons (an operator's, a device's) may hold newlines or escape sequences, stored before they were refused.
  return printable(`${r.id}  ${r.model} ${r.candidate_version}  ${r.phase}  ${step}  weight ${r.weight}%  devices ${r.devices.delivered}/${r.devices.total} ${delivered}${d.pending ? `, ${d.pending} being sent` : ''}${d.retrying ? `, ${d.retrying} retrying` : ''}${r.devices.unreachable ? `, ${r.devices.unreachable} unreachable` : ''}${r.devices.refused ? `, ${r.devices.refused} refused` : ''}${r.devices.reassigned ? `, ${r.devices.reassigned} reassigned` : ''}${untouched ? `, ${untouched} untouched` : ''}${outcome}`);
}

/**
 * A decision of the log; its step is numbered from 1, as in `rollout status` and the decision
 * messages. Decisions taken after the last step (activating everywhere, a later rollback) are
 * counted in the last step, as the rollout's own line counts it (`step 3/3`), not in a step
 * `stepCount + 1` that the rollout does not have.
 */
export function decisionLine(d: GrpcDecision, stepCount: number): string {
  // One line whatever the message holds: a reason's newline or escape sequence is shown escaped (see printable).
  // Messages name who decided ("started by X; previous production 2"): "(by X)" after that would read as part of its last clause.
  const by = d.by && !d.message.includes(`by ${d.by}`) ? ` (by ${d.by})` : '';
  return printable(`${d.at}  step ${Math.min(d.step_index + 1, stepCount)}  ${d.kind}  ${d.verdict}: ${d.message}${by}`);
}

/**
 * Shows a watched rollout on stdout: a progress bar of its steps on a terminal (not TERM=dumb), plain lines
 * otherwise. A terminal state is not shown: the caller prints the summary line once.
 */
export interface RolloutProgress {
  state(rollout: GrpcRollout): void;
  decision(decision: GrpcDecision): void;
  stop(): void;
}

/** Shows a rollout of `stepCount` steps (fixed by its spec). */
export function createRolloutProgress(stepCount: number, stream: NodeJS.WriteStream = process.stdout): RolloutProgress {
  return drawsBars(stream) ? new TtyRolloutProgress(stream, stepCount) : new PlainRolloutProgress(stream, stepCount);
}

class TtyRolloutProgress implements RolloutProgress {
  readonly #multibar: cliProgress.MultiBar;
  #bar: cliProgress.SingleBar | undefined;

  constructor(
    stream: NodeJS.WriteStream,
    private readonly stepCount: number,
  ) {
    this.#multibar = new cliProgress.MultiBar(
      { stream, hideCursor: true, clearOnComplete: true, format: ' {id} {phase} |{bar}| step {step}/{total} weight {weight}% {detail}' },
      cliProgress.Presets.shades_classic,
    );
  }

  state(r: GrpcRollout): void {
    const payload = { id: r.id, phase: r.phase.padEnd(11), step: Math.min(r.step_index + (r.terminal ? 0 : 1), r.step_count), weight: r.weight, detail: printable(r.current_step || r.outcome_status) };
    const done = r.phase === 'Completed' ? r.step_count : Math.min(r.step_index, r.step_count);
    if (!this.#bar) this.#bar = this.#multibar.create(r.step_count, done, payload);
    else this.#bar.update(done, payload);
  }

  decision(d: GrpcDecision): void {
    // Logged above the bar, which is redrawn below it.
    this.#multibar.log(`${decisionLine(d, this.stepCount)}\n`);
  }

  stop(): void {
    this.#multibar.stop();
  }
}

class PlainRolloutProgress implements RolloutProgress {
  #last = '';

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly stepCount: number,
  ) {}

  state(r: GrpcRollout): void {
    if (r.terminal) return;
    const line = rolloutLine(r);
    if (line !== this.#last) this.stream.write(`${line}\n`);
    this.#last = line;
  }

  decision(d: GrpcDecision): void {
    this.stream.write(`  ${decisionLine(d, this.stepCount)}\n`);
  }

  stop(): void {}
}
