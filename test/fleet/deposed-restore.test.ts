import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { startServer } from '../../server/app/start-server.ts';
import { parseServerConfig } from '../../server/config/server-config.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { LOCK_CLASS, LOCK_KEY_SQL } from '../../server/rollout/leader-election.ts';
import { openStore } from '../../server/store/open-store.ts';
import { createLogger } from '../../shared/util/log.ts';
import { engineMissing } from '../helpers/engines.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';
import { waitFor } from '../helpers/mqtt-clients.ts';
import { freshStoreLocation } from '../server/helpers/store-engines.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';

/**
 * A server elected while its database is slow reads the device series back (restoreExports); if it
 * is deposed before that read returns, what it read must not be exported: the new leader drives
 * those devices, and a standby's frozen copies would double every sum in Prometheus. The read is
 * held up by a table lock, the leader's lock session is cut while it waits, and another session
 * takes the leadership so that nothing elects the server again.
 */
test('external broker + PostgreSQL: a server deposed while it reads the device series back exports none of them', async (t: TestContext) => {
  const binary = mosquittoBinary();
  if (!binary) return engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
  const root = await mkdtemp(join(tmpdir(), 'fleetprune-deposed-restore-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const location = await freshStoreLocation(t, 'postgres', join(root, 'data'));
  if (!location || location.engine !== 'postgres') return;
  const { mosquitto, password, pidFile } = await MosquittoProcess.startForServer(binary, root);
  t.after(() => mosquitto.stop());

  // Sessions of an operator's; ended before the server closes (which waits for what they hold up).
  const admin = async () => {
    const client = new pg.Client({ connectionString: location.databaseUrl });
    await client.connect();
    t.after(() => client.end().catch(() => {}));
    await client.query(`SET search_path TO "${location.schema}"`);
    return client;
  };
  const tableLock = await admin();
  const other = await admin();
  // Outside tableLock's transaction, whose view of pg_stat_activity stays as its first read saw it.
  const cutter = await admin();

  const config = parseServerConfig({
    dataDir: join(root, 'data'), nodeId: 'node-a', host: '127.0.0.1', httpPort: 0, grpcPort: 0, adminToken: ADMIN_TOKEN,
    databaseUrl: location.databaseUrl, databaseSchema: location.schema,
    mqttUrl: mosquitto.url, mqttPassword: password, mosquittoDir: mosquitto.authDir, mosquittoPidFile: pidFile,
  });
  // No reconcile round meanwhile: the only read of the devices table held up below is the restore's.
  const server = await startServer(config, { log: createLogger('deposed-restore-test', 'silent'), leaderPollMs: 200, exportReconcileMs: 3_600_000 });
  t.after(() => server.close());
  const baseUrl = `http://127.0.0.1:${server.port('http')}`;
  const leader = async () => (await (await fetch(`${baseUrl}/api/rollouts/leader`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as { isLeader: boolean; leaderSince: string | null; instance: string };
  const deviceSeries = async () => (await (await fetch(`${baseUrl}/metrics`)).text()).split('\n').filter((line) => line.includes('device="osaka-1"'));
  const { isLeader, instance } = await leader();
  assert.equal(isLeader, true);
  const cutLeaderSession = async () => {
    const { rowCount } = await cutter.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [`fleetprune-rollout-leader ${instance}`]);
    assert.equal(rowCount, 1, 'one leader session');
  };

  // A device with a benchmark counted, written by another server.
  const seeding = await openStore(location);
  const fleet = new FleetStore(seeding);
  await fleet.repos.devices.insert({ id: 'osaka-1', labels: { cohort: 'pilot' }, secretHash: '$7$101$c2FsdA==$x', tokenId: 'tok-1', enrolledAt: '2026-03-01T08:00:00.000Z', enrolledBy: 'token:admin' });
  const at = '2026-03-01T09:00:00.000Z';
  await fleet.repos.devices.seedReportTotals('osaka-1', [{
    model: 'iris', version: '1', role: 'active', cohort: 'pilot', predictions: 30, errors: 0, reports: 1, at,
    latest: { accuracy: 0.9, mse: null, latencyMs: { p50: 1, p95: 2, p99: 3 }, predictions: 30, errors: 0, ts: at },
  }]);
  await seeding.close();

  const restoreWaiting = async (since: string) =>
    Number(
      (
        await cutter.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.relation = 'devices'::regclass AND NOT l.granted AND a.query LIKE 'SELECT * FROM devices WHERE revoked_at IS NULL ORDER BY id%' AND a.query_start >= $1`,
          [since],
        )
      ).rows[0]!.n,
    );
  const waitingOnDevices = async () => Number((await cutter.query<{ n: string }>(`SELECT count(*) AS n FROM pg_locks WHERE relation = 'devices'::regclass AND NOT granted`)).rows[0]!.n);

  // Deposed, and elected again at its next poll: it reads the device series back.
  const reelection = async () => {
    const before = (await leader()).leaderSince;
    await cutLeaderSession();
    return before;
  };
  const firstElected = await reelection();
  await waitFor(async () => {
    const now = await leader();
    return now.isLeader && now.leaderSince !== firstElected;
  }, 30_000, 'the server elected again');
  await waitFor(async () => (await deviceSeries()).some((line) => /^fleetprune_device_reports_total\{.*\} 1$/.test(line)), 30_000, 'the stored totals exported');
  // The takeover done before the devices table is held up: after its broker connection it reads the
  // devices again (to re-send their retained assignments), and a takeover held up there is not over
  // when the leader is cut, so the server is not elected again until the table is let go. The
  // counter counts the takeovers finished: the start's and this one.
  await waitFor(async () => /^fleetprune_rollout_takeovers_total 2$/m.test(await (await fetch(`${baseUrl}/metrics`)).text()), 30_000, 'the second takeover finished');

  // Deposed again (its series go), and elected again: this time its read of the devices waits.
  await tableLock.query('BEGIN');
  await tableLock.query('LOCK TABLE devices IN ACCESS EXCLUSIVE MODE');
  try {
    const secondElected = await reelection();
    // Other reads and writes of the devices (the check for silent devices, a heartbeat's write)
    // wait on the lock too: the restore's is its list of the live devices (DevicesRepository.list),
    // sent since the election.
    await waitFor(async () => {
      const now = await leader();
      return now.isLeader && now.leaderSince !== secondElected && now.leaderSince !== null && (await restoreWaiting(now.leaderSince)) > 0;
    }, 30_000, 'the server elected again, reading the devices');

    // Deposed while it waits, and another session leads from then on.
    const otherLeads = other.query(`SELECT pg_advisory_lock($1, ${LOCK_KEY_SQL})`, [LOCK_CLASS]);
    await cutLeaderSession();
    await otherLeads;
    await waitFor(async () => !(await leader()).isLeader, 30_000, 'the server deposed');
  } catch (error) {
    // Failed with the table held: let go of it, or the cleanup (the schema's drop) waits on it for good and the failure is never told.
    await tableLock.query('ROLLBACK');
    throw error;
  }

  // The read returns: what it read stays unexported, then and later.
  await tableLock.query('COMMIT');
  await waitFor(async () => (await waitingOnDevices()) === 0, 30_000, 'the read of the devices done');
  for (let check = 0; check < 10; check++) {
    assert.deepEqual(await deviceSeries(), [], 'a standby exports no device series');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal((await leader()).isLeader, false);
});
