import { printable } from '../../shared/util/printable.ts';
import { deviceState } from './device-filter.ts';
import type { GrpcDevice } from './json-views.ts';
import { labelPairText } from './label-pairs.ts';

/** The DeviceRefusal message of GetDevice. */
export interface GrpcDeviceRefusal {
  assignment_id: string;
  outcome: string;
  role: string;
  model: string;
  version: string;
  reason: string;
  failed_role: string;
  at: string;
}

/** `devices show`'s refusal, as GET /api/devices/:id gives it (lastRefusal). */
export interface DeviceRefusalView {
  assignmentId: string;
  outcome: string;
  role: string;
  model: string;
  version: string;
  reason: string | null;
  failedRole: string | null;
  at: string;
}

/** `devices show`: one `name  value` line each, as `models show` prints a version; every value made printable (labels are the enroller's text). */
export function describeDevice(device: GrpcDevice, refusal: DeviceRefusalView | null): string {
  const ref = (r: GrpcDevice['active']) => (r ? `${r.model}@${r.version} (${r.sha256.slice(0, 12)})` : '-');
  const state = deviceState(device);
  const lines = [
    `device     ${device.id}`,
    `state      ${state}${device.last_seen ? ` (last seen ${device.last_seen})` : ''}`,
    `labels     ${Object.entries(device.labels).map(([key, value]) => labelPairText(key, value)).join(',') || '-'}`,
    `enrolled   ${device.enrolled_at} by ${device.enrolled_by}`,
    ...(device.revoked_at ? [`revoked    ${device.revoked_at}`] : []),
    `active     ${ref(device.active)}`,
    `candidate  ${ref(device.candidate)}`,
    `previous   ${ref(device.previous)}`,
    // What the broker holds for it (retained): what it takes when it next connects.
    `assigned   ${device.assignment_id ? `${device.assignment_model}@${device.assignment_version} as ${device.assignment_role} (${device.assignment_id}, issued ${device.assignment_issued_at})` : '-'}`,
    `refused    ${refusal ? describeRefusal(refusal) : '-'}`,
  ];
  return `${lines.map(printable).join('\n')}\n`;
}

/** A loss report's reason (agent/lost-models.ts): a model the device dropped at start, reported as a refusal of what put it in its slot. */
const DROPPED = /^dropped from the (active|previous|candidate) slot, its files on the device unusable: ([\s\S]*)$/;

function describeRefusal(refusal: DeviceRefusalView): string {
  // Not a refusal of a live assignment: "refused iris@1 as active" read as one, for a model of the
  // previous slot that an old, finished assignment had put there.
  const dropped = refusal.outcome === 'refused' && refusal.reason ? DROPPED.exec(refusal.reason) : null;
  if (dropped) return `dropped ${refusal.model}@${refusal.version} from its ${dropped[1]} slot at ${refusal.at}, its files on the device unusable: ${dropped[2]} (reported against ${refusal.assignmentId})`;
  const what = refusal.outcome === 'benchmark-failed' ? `failed the benchmark of ${refusal.model}@${refusal.version} (the ${refusal.failedRole ?? 'candidate'} model failed)` : `${refusal.outcome} ${refusal.model}@${refusal.version} as ${refusal.role}`;
  return `${what} at ${refusal.at} (${refusal.assignmentId})${refusal.reason ? `: ${refusal.reason}` : ''}`;
}
