import assert from 'node:assert/strict';
import { test } from 'node:test';
import { devicesFrom, renderFleet } from '../../server/dashboard/ui/fleet-view.ts';
import { formatScore } from '../../server/dashboard/ui/html.ts';

test('the fleet view shows one page of devices with fleet-wide counts, and says when there are more', () => {
  const page = devicesFrom({ devices: [{ id: 'dev-1', labels: {}, online: true }], next: 'dev-1', counts: { enrolled: 12000, online: 11000 } });
  const html = renderFleet(page);
  assert.match(html, /11000 of 12000 enrolled devices online \(devices 1–1 by id\)/);
  assert.match(html, /<button type="button" data-page="next"[^>]*title="The next 1 devices, by id" >Next ›<\/button>/, 'Next is on');
  assert.match(html, /<button type="button" data-page="first"[^>]*disabled>/, 'First is off on the first page');
  const third = renderFleet(devicesFrom({ devices: [{ id: 'dev-9', labels: {}, online: true }], next: null, counts: { enrolled: 12000, online: 11000 } }), 2, 500);
  assert.match(third, /\(devices 1001–1001 by id\)/);
  assert.match(third, /data-page="next"[^>]*disabled>/, 'Next is off on the last page');
  assert.equal((html.match(/<tr data-device=/g) ?? []).length, 1);
  // The last (or only) page says nothing about more.
  const last = renderFleet(devicesFrom({ devices: [{ id: 'dev-1', labels: {}, online: false }, { id: 'dev-2', labels: {}, online: false, revokedAt: '2026-01-01T00:00:00Z' }], next: null, counts: { enrolled: 1, online: 0 } }));
  assert.match(last, /<p class="muted">0 of 1 enrolled devices online<\/p>/);
  // A revoked device is listed as revoked, not as offline (it is not among the enrolled).
  assert.match(last, /<tr data-device="dev-2">[\s\S]*?<span class="badge">revoked<\/span>/);
  assert.match(renderFleet(devicesFrom({ devices: [{ id: 'dev-2', labels: {}, online: false, revokedAt: '2026-01-01T00:00:00Z' }], next: null, counts: { enrolled: 1, online: 0, revoked: 1 } })), /<p class="muted">0 of 1 enrolled devices online \(1 revoked device listed too\)<\/p>/);
  // Pages count rows of the whole list, revoked devices included: the range says so, never "device 551 of 530".
  const paged = renderFleet(devicesFrom({ devices: Array.from({ length: 51 }, (_, i) => ({ id: `dev-${501 + i}`, labels: {}, online: true })), next: null, counts: { enrolled: 530, online: 300, revoked: 21 } }), 1, 500);
  assert.match(paged, /300 of 530 enrolled devices online \(devices 501–551 of 551 by id, 21 of them revoked\)/);
});

test('the fleet view says when the server is not connected to the broker (the online states are as they were), and only then', () => {
  const devices = [{ id: 'dev-1', labels: {}, online: true }];
  const down = renderFleet(devicesFrom({ devices, next: null, counts: { enrolled: 1, online: 1 }, broker: { connected: false } }));
  assert.match(down, /^<p class="broker-down">The server is not connected to the broker now: each device's status is as it was when the connection went\.<\/p>/);
  for (const broker of [{ connected: true }, { connected: null }, undefined]) {
    assert.doesNotMatch(renderFleet(devicesFrom({ devices, next: null, counts: { enrolled: 1, online: 1 }, broker })), /broker-down/, JSON.stringify(broker));
  }
});

test('a test score shows an MSE to five significant digits: one in small units is not 0.0', () => {
  assert.equal(formatScore({ mse: 0.0035455123, r2: 0.41234 }), 'mse 0.0035455 r² 0.412');
  assert.equal(formatScore({ mse: 2963.51234, r2: 0.5 }), 'mse 2963.5 r² 0.500');
  // Rounding to zero from below is no negative zero.
  assert.equal(formatScore({ mse: 5929.9, r2: -0.0002 }), 'mse 5929.9 r² 0.000');
  assert.equal(formatScore({ mse: 5929.9, r2: -0.0006 }), 'mse 5929.9 r² -0.001');
  assert.equal(formatScore({ accuracy: 0.9722 }), 'acc 97.22%');
});
