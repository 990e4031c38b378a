import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deferCleanup } from '../helpers/cleanup.ts';
import { after, before, test } from 'node:test';
import { Holdout } from '../../agent/holdout.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { createAgentWorld, isOutcome, type AgentWorld } from './agent-fixtures.ts';
import { recordingLogger, startAgent } from './agent-harness.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

/**
 * A holdout whose feature cell is not a number passes the checks at start (its shape and label
 * column: other columns, a timestamp say, may hold text); every benchmark then failed, and nothing
 * said so before the first candidate came. The active model reads it at start now.
 */
test('at start, a holdout the active model cannot read is said at once (error log naming the cell), one it can read says nothing', async (t) => {
  const deviceId = 'holdout-fits';
  const config = await world.config(deviceId, { site: 'osaka' });
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-holdout-fits-'));
  deferCleanup(t, () => rm(dataDir, { recursive: true, force: true })); // after the agents' own cleanups (last in, first out)
  const seeding = recordingLogger();
  const first = await startAgent(t, world, deviceId, { config, dataDir, logger: seeding.logger });
  await waitFor(() => first.agent.connected, 5000, 'agent connected');
  await world.waitForReport(isOutcome((await world.assign(deviceId, world.v1, 'active')).id, 'activated'));
  await first.stop();
  const misfit = 'the holdout does not fit the active model: benchmarks that read it so fail (each answered benchmark-failed) until it is fixed';
  assert.equal(seeding.lines.some((line) => line.msg === misfit), false, 'the good holdout is not flagged');

  // The same holdout with its first feature cell of the third row made "NaN".
  const lines = (await readFile(world.holdoutPath, 'utf8')).split('\n');
  const cells = lines[3]!.split(',');
  cells[0] = 'NaN';
  lines[3] = cells.join(',');
  const column = lines[0]!.split(',')[0]!;
  const { logger, lines: logged } = recordingLogger();
  const second = await startAgent(t, world, deviceId, { config, dataDir, logger, holdout: Holdout.fromText(lines.join('\n'), 'kind', 'bad-holdout.csv') });
  await second.agent.idle();
  const said = logged.filter((line) => line.msg === misfit);
  assert.equal(said.length, 1, JSON.stringify(logged.map((line) => line.msg)));
  assert.equal(said[0]!.level, 50, 'at error level');
  assert.equal(said[0]!.active, '1');
  assert.equal(said[0]!.err, `bad-holdout.csv: line 4, column "${column}": "NaN" is not a finite number`);
  // It still serves its model.
  assert.equal(second.agent.slots.active?.version, '1');
});
