import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Holdout } from '../../agent/holdout.ts';
import { CLASSIFIER_FEATURES } from '../artifact/fixtures.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { json, settled, startRollbackWorld, startRollout } from '../rollback-review/rollback-world.ts';

/**
 * A device whose holdout its own (active) model cannot read answers the candidate's benchmark
 * `benchmark-failed` with failedRole `active`: that is the device's fault, not the candidate's,
 * which never ran. Before, any such device failed every rollout it joined and marked the sound
 * candidate failed; now the decision log names it and the rollout goes on without it.
 */

/** 30 rows of the fixtures' features, labels a, b, c; `badCell`: row 3's f0 is "NaN". */
function holdoutText(badCell: boolean): string {
  const rows = Array.from({ length: 30 }, (_, r) => [...CLASSIFIER_FEATURES.map((_, c) => (badCell && r === 2 && c === 0 ? 'NaN' : ((r * 7 + c * 3) % 10) / 10)), 'abc'[r % 3]].join(','));
  return [[...CLASSIFIER_FEATURES, 'kind'].join(','), ...rows].join('\n');
}

test("a device whose holdout its active model cannot read does not fail the rollout: the decision log names it, the candidate is not marked failed", async (t) => {
  const devices = ['bench-good-1', 'bench-good-2', 'bench-bad'];
  const world = await startRollbackWorld(t, devices, { holdoutOf: (id) => Holdout.fromText(holdoutText(id === 'bench-bad'), 'kind', `${id}.csv`) });
  if (!world) return;
  // setWeight 100, then an indefinite pause: the rollout waits there while the devices benchmark.
  const id = await startRollout(world, [{ setWeight: 100 }, { pause: {} }]);
  await waitFor(async () => (await world.answers('bench-bad')).some((line) => line.includes('benchmark-failed')), 30_000, 'bench-bad answered benchmark-failed');
  const failed = (await world.answers('bench-bad')).find((line) => line.includes('benchmark-failed'))!;
  assert.match(failed, /\(the active model 1: bench-bad\.csv: line 4, column "f0": "NaN" is not a finite number\)$/);
  const decisions = async () => (await json<{ decisions: { kind: string; verdict: string; message: string }[] }>(await world.server.request('GET', `/api/rollouts/${id}`))).decisions;
  await waitFor(async () => (await decisions()).some((d) => d.verdict === 'no-benchmark'), 10_000, 'the decision log names the device');
  const said = (await decisions()).find((d) => d.verdict === 'no-benchmark')!;
  assert.match(said.message, /^device bench-bad could not benchmark 2 beside its active model: the active model 1: .*that says nothing of the candidate/);
  const paused = await settled(world, id, 'Paused');
  assert.equal(paused.outcome ?? null, null, 'the rollout did not end');
  assert.equal(await world.server.server.ctx.registry.versionStatus('wine', '2'), null, 'the candidate is not marked failed');
  // The good devices benchmarked it.
  for (const device of devices.slice(0, 2)) assert.equal((await world.answers(device)).some((line) => line.includes('benchmark-failed')), false, device);
});
