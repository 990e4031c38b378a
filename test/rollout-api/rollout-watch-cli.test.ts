import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { startCli } from '../helpers/cli.ts';
import { cuttableProxy } from '../helpers/cuttable-proxy.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { startRolloutServer, waitForRollout, type RolloutTestServer } from './helpers/rollout-server.ts';

/** A rollout paused at its first pause step, and `rollout watch` of it through `address` once it has shown it paused. */
async function watchingPausedRollout(t: TestContext, s: RolloutTestServer, address = s.grpcAddress) {
  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }] } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Paused');
  const { output, exited } = startCli(t, ['rollout', 'watch', id, '--server', address, '--token', ADMIN_TOKEN]);
  const deadline = Date.now() + 60_000;
  while (!new RegExp(`^${id} .* Paused `, 'm').test(output.stdout)) {
    assert.ok(Date.now() < deadline, `the watch never showed the rollout: ${output.stdout}${output.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { id, output, exited };
}

test('rollout watch cut off by a server shutdown says the server ended the watch and the rollout goes on (not "Call cancelled")', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const { id, output, exited } = await watchingPausedRollout(t, s);
  await s.server.close();
  const [code] = await exited;
  assert.equal(code, 5, output.stderr);
  assert.equal(
    output.stderr.trimEnd().split('\n').at(-1),
    `fleetprune: rollout ${id}: the server ended the watch before the rollout finished (Call cancelled); it may have shut down, restarted or stopped answering, and the rollout goes on: \`fleetprune rollout watch ${id}\` follows it again`,
  );
});

test('rollout watch of a server that stops answering (a frozen process: the connection stays open, nothing comes back) ends within its ping timeout instead of waiting for good', { timeout: 90_000 }, async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const separator = s.grpcAddress.lastIndexOf(':');
  const proxy = await cuttableProxy(t, { host: s.grpcAddress.slice(0, separator), port: Number(s.grpcAddress.slice(separator + 1)) });
  const { id, output, exited } = await watchingPausedRollout(t, s, `127.0.0.1:${proxy.port}`);
  proxy.stall();
  const stalledAt = Date.now();
  const [code] = await exited;
  const waited = Date.now() - stalledAt;
  assert.equal(code, 5, output.stderr);
  // It pings every 15 s and gives up on a ping not answered within 10 s.
  assert.ok(waited < 40_000, `it gave up after ${waited} ms`);
  assert.equal(
    output.stderr.trimEnd().split('\n').at(-1),
    `fleetprune: rollout ${id}: the server ended the watch before the rollout finished (Connection dropped); it may have shut down, restarted or stopped answering (or this command was suspended too long to answer its keep-alive pings), and the rollout goes on: \`fleetprune rollout watch ${id}\` follows it again`,
  );
});
