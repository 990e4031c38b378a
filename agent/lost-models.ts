import type { Assignment, AssignmentReport, Role } from '../shared/protocol/payloads.ts';
import type { LostModel, SlotState } from './slot-state.ts';

/**
 * Models dropped from their slots at start because their files were missing, unreadable or
 * damaged (SlotState.lost). Each is reported to the server as a refusal of the assignment or
 * command whose answer put it in its slot, and restored by taking the server's retained
 * assignment again when it names it. Only the newest assignment the device took can be taken
 * again: assignments are signed for the device and numbered, each number used once, so that one
 * is the server's retained one, and an older one replayed stays a replay.
 */

/** Builds a lost model's report: a refusal of `answers` with `reason`, whose id is told apart from other answers to it by `key`. */
export type LossReport = (answers: string, role: Role, model: LostModel, reason: string, key: string) => AssignmentReport;

function report(make: LossReport, answers: string, role: Role, model: LostModel): AssignmentReport {
  return make(answers, role, model, `dropped from the ${model.slot} slot, its files on the device unusable: ${model.reason}`, `dropped:${model.slot}:${model.sha256}:${model.at}`);
}

/**
 * `state` after models were dropped at start: each kept in `lost` (replacing an earlier entry for
 * the same model), and reported as a refusal of the message that put it in its slot when one is
 * on record (else when the assignment restoring it arrives, see `withLossReportedTo`).
 */
export function withLost(state: SlotState, dropped: readonly LostModel[], make: LossReport): SlotState {
  const reports: AssignmentReport[] = [];
  const entries = dropped.map((model) => {
    const installer = state.installedBy?.[model.sha256] ?? (model.slot === 'candidate' ? state.candidateAssignmentId : undefined);
    if (installer) reports.push(report(make, installer, model.slot === 'candidate' ? 'candidate' : 'active', model));
    return { ...model, reported: installer !== undefined };
  });
  const earlier = (state.lost ?? []).filter((model) => !entries.some((entry) => entry.sha256 === model.sha256));
  return { ...state, lost: [...earlier, ...entries], unsentReports: [...state.unsentReports, ...reports] };
}

/**
 * Whether `assignment` restores a lost model: it names one and is the newest assignment taken
 * (`newestSeq`), the server's retained one. It is then taken again although it was handled.
 */
export function restores(state: SlotState, assignment: Assignment, newestSeq: number): boolean {
  return assignment.seq === newestSeq && (state.lost ?? []).some((model) => model.sha256 === assignment.sha256);
}

/** The state change and report for a lost model nothing on record had put in its slot, answering the assignment restoring it; undefined when there is none. */
export function withLossReportedTo(state: SlotState, assignment: Assignment, make: LossReport): { state: SlotState; report: AssignmentReport } | undefined {
  const model = (state.lost ?? []).find((entry) => entry.sha256 === assignment.sha256 && !entry.reported);
  if (!model) return undefined;
  const lost = state.lost!.map((entry) => (entry === model ? { ...entry, reported: true } : entry));
  return { state: { ...state, lost }, report: report(make, assignment.id, assignment.role, model) };
}

/**
 * The suffix of the report ids of the answers to `answers` when it is the pending assignment and
 * restores a lost model: the server ingests a report id once, and it has the first answers to that
 * assignment already. Deterministic (the drop's time), so a report re-created after a crash keeps its id.
 */
export function restoreMark(state: SlotState, answers: string): string {
  const { pending, lost } = state;
  const restoring = pending?.id === answers ? lost?.find((model) => model.sha256 === pending.sha256) : undefined;
  return restoring ? `:restored:${restoring.at}` : '';
}
