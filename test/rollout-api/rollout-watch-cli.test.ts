import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startCli } from '../helpers/cli.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { startRolloutServer, waitForRollout } from './helpers/rollout-server.ts';


test('rollout watch cut off by a server shutdown says the server ended the watch and the rollout goes on (not "Call cancelled")', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const started = await s.request('POST', '/api/rollouts', { json: { model: 'wine', candidateVersion: '2', steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }] } });
  assert.equal(started.status, 201, await started.clone().text());
  const { id } = (await started.json()) as { id: string };
  await waitForRollout(s.request, id, (v) => v.phase === 'Paused');

  const { output, exited } = startCli(t, ['rollout', 'watch', id, '--server', s.grpcAddress, '--token', ADMIN_TOKEN]);
  // The watch has shown the paused rollout before the server goes.
  const deadline = Date.now() + 60_000;
  while (!new RegExp(`^${id} .* Paused `, 'm').test(output.stdout)) {
    assert.ok(Date.now() < deadline, `the watch never showed the rollout: ${output.stdout}${output.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  await s.server.close();
  const [code] = await exited;
  assert.equal(code, 2, output.stderr);
  assert.equal(
    output.stderr.trimEnd().split('\n').at(-1),
    `fleetprune: rollout ${id}: the server ended the watch before the rollout finished (Call cancelled); it may have shut down or restarted, and the rollout goes on: \`fleetprune rollout watch ${id}\` follows it again`,
  );
});
