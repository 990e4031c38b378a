import { z } from 'zod';
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
});
export type DeviceView = z.infer<typeof DeviceViewSchema>;

export function deviceView(device: DeviceRecord): DeviceView {
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
    heartbeat: device.heartbeat && { ...device.heartbeat, serving: device.heartbeat.serving ?? null },
    assignment: retained && { id: retained.id, model: retained.model, version: retained.version, role: retained.role, issuedAt: retained.issuedAt },
  };
}
