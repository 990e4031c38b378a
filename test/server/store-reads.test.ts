import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { StoreReads } from '../../server/metrics/store-reads.ts';

/** A query that does not answer until `release` is called (then it answers at once); counts how many are in flight at once. */
function stalled() {
  let inFlight = 0;
  let most = 0;
  let released = false;
  const releases: (() => void)[] = [];
  const query = () =>
    new Promise<number>((resolve) => {
      if (released) return resolve(7);
      most = Math.max(most, ++inFlight);
      releases.push(() => {
        inFlight--;
        resolve(7);
      });
    });
  const release = () => {
    released = true;
    releases.splice(0).forEach((answer) => answer());
  };
  return { query, most: () => most, release };
}

/** StoreReads' timers do not hold the process open (a server's do not): this test's must be. */
function keepAlive(t: TestContext): void {
  const timer = setInterval(() => {}, 1000);
  t.after(() => clearInterval(timer));
}

test('/metrics store reads: scrapes that stop waiting for a slow probe do not send another while it is in flight; the store counts as down meanwhile, and up once it answers', async (t) => {
  keepAlive(t);
  const probe = stalled();
  const reads = new StoreReads({ probe: probe.query, timeoutMs: 20 });
  for (let scrape = 0; scrape < 5; scrape++) assert.equal(await reads.up(), false, `scrape ${scrape}: no answer in time`);
  assert.equal(probe.most(), 1, 'one probe in flight, not one per scrape');
  probe.release();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(await reads.up(), true, 'the next probe answers');
});

test('/metrics store reads: a slow read of one gauge is not sent again by each scrape (the pool would fill); a scrape gets undefined (the last value stays) until it answers', async (t) => {
  keepAlive(t);
  const read = stalled();
  const reads = new StoreReads({ probe: async () => 1, timeoutMs: 20 });
  for (let scrape = 0; scrape < 5; scrape++) assert.equal(await reads.read('fleetprune_fleet_devices', read.query), undefined, `scrape ${scrape}`);
  assert.equal(read.most(), 1, 'one read of the key in flight');
  const next = reads.read('fleetprune_fleet_devices', read.query);
  read.release();
  assert.equal(await next, 7, 'a scrape waiting when the read answers gets its value');
});
