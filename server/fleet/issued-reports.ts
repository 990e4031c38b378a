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
 * - 'wrong-outcome': a slot-moving answer the issued message cannot have (SLOT_OUTCOMES_OF), or
 *   naming another slot than its outcome moves;
 * - an UnknownModel: a benchmark about a model that is not a registered version with that sha256
 *   (unknownModelOf).
 * An answer to a fleet command (a rollback) names the device's own previous model, which the
 * server cannot check against what it issued, and a benchmark without an assignment
 * (`assignmentId` null: kept by an agent from before they were recorded) is checked against the
 * registry only.
 */
export async function unissuedReport(tx: FleetRepositories, report: Report): Promise<'unknown-assignment' | 'wrong-outcome' | WrongModel | UnknownModel | null> {
  if (report.kind === 'benchmark') {
    if (report.assignmentId !== null) {
      const assignment = await tx.assignments.get(report.assignmentId, report.deviceId);
      if (!assignment) return 'unknown-assignment';
      if (!names(report.candidate, assignment)) return wrongModel(report.candidate, assignment);
    }
    return unknownModelOf(report, tx.versions);
  }
  const assignment = await tx.assignments.get(report.assignmentId, report.deviceId);
  const command = assignment ? undefined : await tx.commands.get(report.assignmentId, report.deviceId);
  if (!assignment && !command) return 'unknown-assignment';
  if (!SLOT_OUTCOMES.has(report.outcome)) return null;
  // A slot-moving answer the issued message cannot have: "activated" for a candidate assignment,
  // "installed" for an active one, a fleet command's outcome for an assignment or the other
  // command's. It would move the wrong slot (a candidate shown as the active model).
  const issued = assignment ? assignment.role : command!.command;
  if (!SLOT_OUTCOMES_OF[issued].includes(report.outcome) || report.role !== SLOT_OF_OUTCOME[report.outcome]) return 'wrong-outcome';
  if (assignment && !names(report, assignment)) return wrongModel(report, assignment);
  return null;
}

/**
 * The slot-moving outcomes an agent answers each issued message with: an active assignment is
 * activated (or rolled back to, when it is the device's previous model), a candidate one
 * installed; a rollback command rolls back, a drop-candidate command drops the candidate.
 */
const SLOT_OUTCOMES_OF: Record<'active' | 'candidate' | 'rollback' | 'drop-candidate', readonly AssignmentReport['outcome'][]> = {
  active: ['activated', 'rolled-back'],
  candidate: ['installed'],
  rollback: ['rolled-back'],
  'drop-candidate': ['candidate-dropped'],
};

/** The slot each slot-moving outcome is about, as the agent names it in the report's role. */
const SLOT_OF_OUTCOME: Partial<Record<AssignmentReport['outcome'], 'active' | 'candidate'>> = {
  installed: 'candidate',
  activated: 'active',
  'rolled-back': 'active',
  'candidate-dropped': 'candidate',
};

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
