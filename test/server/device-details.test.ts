import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeDevice, type DeviceRefusalView } from '../../server/cli/device-details.ts';
import type { GrpcDevice } from '../../server/cli/json-views.ts';

const device: GrpcDevice = {
  id: 'a5', labels: {}, online: true, last_seen: '2026-12-08T00:41:00Z', enrolled_at: '2026-12-08T00:00:00Z', enrolled_by: 'token:admin', revoked_at: '',
  active: { model: 'iris', version: '4', sha256: 'a'.repeat(64) }, candidate: null, previous: null,
  assignment_id: '', assignment_version: '', assignment_role: '', assignment_model: '', assignment_issued_at: '',
} as GrpcDevice;
const refusal = (fields: Partial<DeviceRefusalView>): DeviceRefusalView => ({ assignmentId: 'ro-b8-a22', outcome: 'refused', role: 'active', model: 'iris', version: '1', reason: null, failedRole: null, at: '2026-12-08T00:40:47Z', ...fields });
const refusedLine = (view: DeviceRefusalView) => describeDevice(device, view).split('\n').find((line) => line.startsWith('refused '));

// It read "refused iris@1 as active at …": as if the device had refused an assignment of iris@1,
// for a model of its previous slot that an old, finished assignment had put there.
test("devices show tells a model the device dropped from a slot (its files unusable) from a refusal of an assignment", () => {
  assert.equal(
    refusedLine(refusal({ reason: 'dropped from the previous slot, its files on the device unusable: /d/models/x/manifest.json: missing' })),
    'refused    dropped iris@1 from its previous slot at 2026-12-08T00:40:47Z, its files on the device unusable: /d/models/x/manifest.json: missing (reported against ro-b8-a22)',
  );
  assert.equal(refusedLine(refusal({ reason: 'signature: bad' })), 'refused    refused iris@1 as active at 2026-12-08T00:40:47Z (ro-b8-a22): signature: bad');
  assert.equal(refusedLine(refusal({ outcome: 'benchmark-failed', role: 'candidate', failedRole: 'candidate', reason: 'out of memory' })), 'refused    failed the benchmark of iris@1 (the candidate model failed) at 2026-12-08T00:40:47Z (ro-b8-a22): out of memory');
});
