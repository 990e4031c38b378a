import type { AssignmentReport, ModelRef, Report } from '../../shared/protocol/payloads.ts';
import type { UnknownModel, WrongModel } from './fleet-ingest.ts';
import type { FleetRepositories } from './fleet-store.ts';
import { unknownModelOf } from './registered-models.ts';

/** The answers that move a device's slots (slotsAfter): the model they name goes into one (or out of it); others leave its metric series alone. */
export const SLOT_OUTCOMES: ReadonlySet<AssignmentReport['outcome']> = new Set(['installed', 'activated', 'rolled-back', 'candidate-dropped']);

/**
 * Why a device's report is not one about what the server issued it, or null when it is. A device
 * runs only what it was assigned, so anything else is a buggy or forged report, and changes
 * nothing (stored, it would move the device's slots or add evidence for a model it never ran):
 * - 'unknown-assignment': an answer to no assignment or fleet command issued to the device, or a
 *   benchmark naming an assignment that was not issued to it;
 * - a WrongModel: an answer to an assignment that moves a slot, or a benchmark, naming another
 *   model than that assignment (another artifact id, or its own under another name or version);
 * - an UnknownModel: a benchmark about a model that is not a registered version with that sha256
 *   (unknownModelOf).
 * An answer to a fleet command (a rollback) names the device's own previous model, which the
 * server cannot check against what it issued, and a benchmark without an assignment
 * (`assignmentId` null: kept by an agent from before they were recorded) is checked against the
 * registry only.
 */
export async function unissuedReport(tx: FleetRepositories, report: Report): Promise<'unknown-assignment' | WrongModel | UnknownModel | null> {
  if (report.kind === 'benchmark') {
    if (report.assignmentId !== null) {
      const assignment = await tx.assignments.get(report.assignmentId, report.deviceId);
      if (!assignment) return 'unknown-assignment';
      if (!names(report.candidate, assignment)) return wrongModel(report.candidate, assignment);
    }
    return unknownModelOf(report, tx.versions);
  }
  const assignment = await tx.assignments.get(report.assignmentId, report.deviceId);
  if (!assignment && !(await tx.commands.get(report.assignmentId, report.deviceId))) return 'unknown-assignment';
  if (assignment && SLOT_OUTCOMES.has(report.outcome) && !names(report, assignment)) return wrongModel(report, assignment);
  return null;
}

type IssuedModel = { model: string; version: string; artifactId: string };

/** Whether `named` is the assignment's model: its artifact id, under its name and version (the registry holds an artifact once). */
function names(named: ModelRef, assignment: IssuedModel): boolean {
  return named.sha256 === assignment.artifactId && named.model === assignment.model && named.version === assignment.version;
}

function wrongModel(named: ModelRef, assignment: IssuedModel): WrongModel {
  return {
    outcome: 'wrong-model',
    ref: { model: named.model, version: named.version, sha256: named.sha256 },
    assigned: { model: assignment.model, version: assignment.version, sha256: assignment.artifactId },
  };
}
