import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ServiceError } from '../../server/app/service-error.ts';
import { LeaderOnlyFleetGate } from '../../server/fleet/fleet-gate.ts';
import { SingleProcessLeadership, type LeaderStatus, type Leadership } from '../../server/rollout/leader-election.ts';
import { RolloutService, type RolloutServiceOptions } from '../../server/rollout/rollout-service.ts';
import type { RolloutSpec } from '../../server/rollout/rollout-spec.ts';
import type { Principal } from '../../server/auth/principal.ts';

const ADMIN = { tokenId: 'admin', role: 'admin', label: 'admin' } as unknown as Principal;

/** A leadership that answers `status` as given, and says whether its takeover failed for good. */
function leadership(status: Partial<LeaderStatus>, failed = false): Leadership {
  return {
    start: async () => {},
    stop: async () => {},
    status: async () => ({ engine: 'postgres', instance: 'node-b:42:abcdef', isLeader: false, leaderSince: null, leader: null, ...status }),
    takeoverFailed: () => failed,
  };
}

/** The code and message `attempt` is refused with (a ServiceError). */
async function refusal(attempt: Promise<unknown>): Promise<[string, string]> {
  const error = await attempt.then(() => assert.fail('not refused'), (error: unknown) => error);
  assert.ok(error instanceof ServiceError, String(error));
  return [error.code, error.message];
}

/** The code and message a start is refused with on a server without a controller. */
function startRefusal(lead: Leadership): Promise<[string, string]> {
  const service = new RolloutService({ controller: () => undefined, leadership: lead } as unknown as RolloutServiceOptions);
  return refusal(service.start({ model: 'wine', candidateVersion: '2', steps: [] } as unknown as RolloutSpec, ADMIN));
}

/** The code and message a fleet change is refused with by the external broker's gate. */
function gateRefusal(lead: Leadership): Promise<[string, string]> {
  return refusal(new LeaderOnlyFleetGate(lead).assertActive());
}

test('rollout commands on a server that cannot drive rollouts: retry_later (CLI exit 5) only where waiting can help', async () => {
  // A failover under way: nobody leads yet.
  assert.deepEqual(await startRefusal(leadership({ leader: null })), ['retry_later', 'this server (node-b:42:abcdef) is not the rollout leader, and none is elected right now; retry shortly']);
  // Another server leads: ask it.
  assert.deepEqual(await startRefusal(leadership({ leader: 'node-a:7:123456' })), ['unavailable', 'this server (node-b:42:abcdef) is not the rollout leader; send rollout commands to the leader, node-a (process 7, instance node-a:7:123456; a load balancer finds it by GET /readyz?role=leader)']);
  // Elected, taking over.
  assert.deepEqual(await startRefusal(leadership({ isLeader: true, leader: 'node-b:42:abcdef' })), ['retry_later', 'this server (node-b:42:abcdef) leads but has not taken the rollouts over yet; retry shortly']);
  // Elected, and the takeover failed for good: waiting does not heal it.
  assert.deepEqual(await startRefusal(leadership({ isLeader: true, leader: 'node-b:42:abcdef' }, true)), [
    'unavailable',
    'this server (node-b:42:abcdef) leads but its takeover of the rollouts failed (see its log); restart it once the cause is fixed',
  ]);
});

test('fleet changes with an external broker: retry_later while nobody leads or the leader still connects; the leader named, or a failed takeover said', async () => {
  assert.deepEqual(await gateRefusal(leadership({ leader: null })), ['retry_later', 'this server (node-b:42:abcdef) is a standby: with an external broker only the leader connects to it, and none is elected right now; retry shortly']);
  assert.deepEqual(await gateRefusal(leadership({ leader: 'node-a:7:123456' })), ['unavailable', 'this server (node-b:42:abcdef) is a standby: with an external broker only the leader connects to it; send fleet changes to the leader, node-a (process 7, instance node-a:7:123456; a load balancer finds it by GET /readyz?role=leader)']);
  assert.deepEqual(await gateRefusal(leadership({ isLeader: true, leader: 'node-b:42:abcdef' })), ['retry_later', 'this server (node-b:42:abcdef) leads but is not connected to the external broker yet; retry shortly']);
  assert.deepEqual(await gateRefusal(leadership({ isLeader: true, leader: 'node-b:42:abcdef' }, true)), [
    'unavailable',
    'this server (node-b:42:abcdef) leads but its takeover of the broker failed (see its log); restart it once the cause is fixed',
  ]);
});

test('a single server whose takeover fails after its start went on says so; one still taking over, or that took over, does not', async () => {
  let fail!: (error: Error) => void;
  const failing = new SingleProcessLeadership('solo:1:000000', { startWaitMs: 10 });
  await failing.start({ elected: () => new Promise((_, reject) => (fail = reject)), deposed: () => {}, stopping: () => {} } as never);
  assert.equal(failing.takeoverFailed(), false, 'still taking over');
  fail(new Error('the broker refused the password'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(failing.takeoverFailed(), true);
  const ok = new SingleProcessLeadership('solo:2:000000', { startWaitMs: 10 });
  await ok.start({ elected: async () => {}, deposed: () => {}, stopping: () => {} } as never);
  assert.equal(ok.takeoverFailed(), false);
});

test('a leader whose --node-id is longer than an instance id keeps is named by its beginning, and said so', async () => {
  const { describeLeader, newInstanceId } = await import('../../server/rollout/leader-election.ts');
  const instance = newInstanceId('ip-10-0-12-34.eu-west-1.compute.internal');
  assert.match(describeLeader(instance), /^ip-10-0-12-34\.eu-west… \(its --node-id begins so; process \d+, instance ip-10-0-12-34\.eu-west~:\d+:[0-9a-f]{6}; a load balancer finds it by GET \/readyz\?role=leader\)$/);
  assert.match(describeLeader(newInstanceId('plant-a')), /^plant-a \(process \d+, instance plant-a:\d+:[0-9a-f]{6}; /);
  // One of exactly the length an instance id keeps may be whole, or cut by a server from before the
  // cut mark: said so, not called cut or whole.
  assert.match(describeLeader(newInstanceId('abcdefghij-klmnopqrstu')), /^abcdefghij-klmnopqrstu \(its --node-id, or the beginning of it; process \d+, instance abcdefghij-klmnopqrstu:\d+:/);
  assert.match(describeLeader(newInstanceId('short')), /^short \(process \d+, /);
});
