import { AssignmentReportSchema, type AssignmentReport, type ModelRef, type Role } from '../shared/protocol/payloads.ts';
import { reportId } from './report-ids.ts';

/**
 * Builds the agent's answers to assignments and fleet commands (assignment reports) as the
 * server's schema takes them: a deterministic id, and a reason the server can store.
 */

/** `key` tells the report's id apart from other answers to `answers`. */
export function assignmentReport(deviceId: string, createdAt: Date, answers: string, outcome: AssignmentReport['outcome'], role: Role, ref: ModelRef, reason: string | null, key: string): AssignmentReport {
  return AssignmentReportSchema.parse({
    schema: 1,
    id: reportId(deviceId, answers, key),
    kind: 'assignment',
    deviceId,
    createdAt: createdAt.toISOString(),
    assignmentId: answers,
    outcome,
    role,
    model: ref.model,
    version: ref.version,
    sha256: ref.sha256,
    reason: reason === null ? null : reportReason(reason),
  });
}

/** The schema's limit on a report's reason, in UTF-16 code units. */
const MAX_REASON_CHARS = 2000;

/**
 * A reason as a report carries it: well-formed Unicode (an error message can quote half of a
 * surrogate pair), cut to MAX_REASON_CHARS without splitting a pair. The server refuses a report
 * with a lone surrogate as invalid, and the outbox has already let it go by then.
 */
function reportReason(reason: string): string {
  const whole = reason.toWellFormed();
  if (whole.length <= MAX_REASON_CHARS) return whole;
  const last = whole.charCodeAt(MAX_REASON_CHARS - 1);
  return whole.slice(0, last >= 0xd800 && last <= 0xdbff ? MAX_REASON_CHARS - 1 : MAX_REASON_CHARS);
}
