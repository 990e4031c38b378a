import { createHash } from 'node:crypto';

/**
 * Report ids derived from what the report answers (device, assignment or command, kind), so a
 * report re-created after a crash carries the id of the first attempt and the server, which
 * ingests an id once, keeps exactly one.
 */
export function reportId(deviceId: string, answers: string, kind: string): string {
  return createHash('sha256').update(`${deviceId}\u0000${answers}\u0000${kind}`).digest('base64url').slice(0, 22);
}
