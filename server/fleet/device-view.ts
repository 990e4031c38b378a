import { z } from 'zod';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import type { DeviceRecord } from '../store/repositories/devices-repository.ts';

const ModelRefView = z.strictObject({ model: z.string(), version: z.string(), sha256: z.string() }).nullable();

/** A device as the APIs show it: never its secret hash or token id. */
export const DeviceViewSchema = z.strictObject({
  id: z.string(),
  labels: z.record(z.string(), z.string()),
  enrolledAt: z.string(),
  enrolledBy: z.string(),
  revokedAt: z.string().nullable(),
  online: z.boolean(),
  lastSeen: z.string().nullable(),
  active: ModelRefView,
  candidate: ModelRefView,
  previous: ModelRefView,
  heartbeat: z
    .strictObject({
      at: z.string(),
      uptimeSeconds: z.number(),
      cpuPercent: z.number(),
      rssBytes: z.number(),
      serving: z.record(z.string(), z.number()).nullable(),
    })
    .nullable(),
  /** The assignment retained for the device now (id, model, version, role). */
  assignment: z.strictObject({ id: z.string(), model: z.string(), version: z.string(), role: z.string(), issuedAt: z.string() }).nullable(),
  /**
   * One device only (GET /api/devices/:id): its latest answer that refused an assignment or
   * command, or failed its benchmark (null: none among its latest answers), `at` when it arrived.
   */
  lastRefusal: z
    .strictObject({
      assignmentId: z.string(),
      outcome: z.string(),
      role: z.string(),
      model: z.string(),
      version: z.string(),
      reason: z.string().nullable(),
      /** A failed benchmark's failing model: `candidate`, or `active` (the device's own model failed, not the candidate); null for a refusal. */
      failedRole: z.string().nullable(),
      at: z.string(),
    })
    .nullable()
    .optional(),
});
export type DeviceView = z.infer<typeof DeviceViewSchema>;

export type DeviceRefusal = NonNullable<DeviceView['lastRefusal']>;

export function refusalView(report: AssignmentReport, receivedAt: string): DeviceRefusal {
  const { assignmentId, outcome, role, model, version, reason } = report;
  // Agents that predate failedRole only failed candidates' benchmarks that way.
  const failedRole = outcome === 'benchmark-failed' ? (report.failedRole ?? 'candidate') : null;
  return { assignmentId, outcome, role, model, version, reason, failedRole, at: receivedAt };
}

export function deviceView(device: DeviceRecord, lastRefusal?: DeviceRefusal | null): DeviceView {
  const retained = device.retainedAssignment;
  return {
    id: device.id,
    labels: device.labels,
    enrolledAt: device.enrolledAt,
    enrolledBy: device.enrolledBy,
    revokedAt: device.revokedAt,
    online: device.online,
    lastSeen: device.lastSeen,
    active: device.active,
    candidate: device.candidate,
    previous: device.previous,
    // The run id stays internal (it only decides how the next heartbeat's counters count).
    heartbeat: device.heartbeat && { at: device.heartbeat.at, uptimeSeconds: device.heartbeat.uptimeSeconds, cpuPercent: device.heartbeat.cpuPercent, rssBytes: device.heartbeat.rssBytes, serving: device.heartbeat.serving ?? null },
    assignment: retained && { id: retained.id, model: retained.model, version: retained.version, role: retained.role, issuedAt: retained.issuedAt },
    ...(lastRefusal === undefined ? {} : { lastRefusal }),
  };
}
