import type { AssignmentReport, ModelRef } from '../../shared/protocol/payloads.ts';
import type { DeviceSlots } from '../store/repositories/devices-repository.ts';

function same(a: ModelRef | null, b: ModelRef): boolean {
  return a !== null && a.sha256 === b.sha256;
}

/**
 * The device's slots after it answered an assignment, mirroring what the agent does (so the
 * device list is current before the next heartbeat, which stays authoritative); null when the
 * answer changes nothing.
 */
export function slotsAfter(slots: DeviceSlots, report: AssignmentReport): DeviceSlots | null {
  const ref: ModelRef = { model: report.model, version: report.version, sha256: report.sha256 };
  switch (report.outcome) {
    case 'installed':
      return same(slots.candidate, ref) ? null : { ...slots, candidate: ref };
    case 'activated':
      if (same(slots.active, ref)) return null;
      return { active: ref, previous: slots.active ?? slots.previous, candidate: same(slots.candidate, ref) ? null : slots.candidate };
    case 'rolled-back':
      return { active: ref, previous: slots.active, candidate: same(slots.candidate, ref) ? null : slots.candidate };
    case 'candidate-dropped':
      return slots.candidate === null ? null : { ...slots, candidate: null };
    default:
      return null;
  }
}
