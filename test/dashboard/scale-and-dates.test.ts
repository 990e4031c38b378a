import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeArtifact, makeSigner, uploadBlobs } from '../server/helpers/artifacts.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { json, serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';

/**
 * The Models view downloaded every version of the registry with its manifest at every refresh (5 s):
 * with a thousand versions, megabytes a refresh, seconds of the page's time, and a table tens of
 * thousands of pixels tall. It pages through the registry 50 versions at a time, as the Fleet view
 * pages through the devices, and a refresh asks for the page shown only.
 */
test('the models view pages through every model\'s versions, 50 at a time, and a refresh downloads the page shown only', { timeout: 90_000 }, async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } });
  if (!server) return;
  // One set of files registered as 130 versions of iris, and one version of three more models: 133 in all.
  const artifact = await makeArtifact(t, { seed: 1, name: 'iris', version: '1', privateKey: signer.privateKey });
  await uploadBlobs(server, artifact.dir, artifact.manifest);
  for (let version = 1; version <= 130; version++) {
    const response: Response = await server.request('POST', '/api/models/iris/versions', { json: { manifest: signManifest({ ...artifact.manifest, version: String(version) }, signer.privateKey) } });
    assert.equal(response.status, 201, await response.text());
  }
  for (const name of ['beer', 'wine', 'cider']) {
    const response: Response = await server.request('POST', `/api/models/${name}/versions`, { json: { manifest: signManifest({ ...artifact.manifest, name, version: '1' }, signer.privateKey) } });
    assert.equal(response.status, 201, await response.text());
  }
  const asked: string[] = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (/^\/api\/(models|versions)/.test(url.pathname)) asked.push(url.pathname + url.search);
  });
  const models = page.locator('#models');
  const names = () => models.locator('tbody tr td:first-child').allInnerTexts();
  const shown = (text: string) => models.locator('#versions-shown', { hasText: text }).waitFor({ timeout: 10_000 });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);

  // By model name, then registration order: beer, cider, then iris's first 48.
  await shown('Versions 1–50 of more than 50, by model name, oldest first');
  let rows = await names();
  assert.deepEqual([rows.length, ...rows.slice(0, 3), rows.at(-1)], [50, 'beer@1', 'cider@1', 'iris@1', 'iris@48']);
  assert.ok(await models.locator('button[data-page="previous"]').isDisabled(), 'the first page');
  const seqOf = async (version: string) => (await json<{ seq: number }>(await server.request('GET', `/api/models/iris/versions/${version}`))).seq;

  await models.locator('button[data-page="next"]').click();
  await shown('Versions 51–100 of more than 100');
  rows = await names();
  assert.deepEqual([rows.length, rows[0], rows.at(-1)], [50, 'iris@49', 'iris@98']);
  await models.locator('button[data-page="next"]').click();
  await shown('Versions 101–133 of 133');
  rows = await names();
  assert.deepEqual([rows.length, rows[0], rows.at(-2), rows.at(-1)], [33, 'iris@99', 'iris@130', 'wine@1']);
  assert.ok(await models.locator('button[data-page="next"]').isDisabled(), 'the last page');
  // Over a refresh (every 5 s): still the page shown, and only it asked for.
  asked.length = 0;
  await page.waitForTimeout(6_000);
  assert.deepEqual((await names()).slice(0, 1), ['iris@99']);
  const third = `/api/versions?limit=50&afterModel=iris&afterSeq=${await seqOf('98')}`;
  assert.ok(asked.length > 0 && asked.every((path) => path === third), asked.join(' '));

  await models.locator('button[data-page="previous"]').click();
  await shown('Versions 51–100 of more than 100');
  await models.locator('button[data-page="first"]').click();
  await shown('Versions 1–50 of more than 50');

  // The page shown loses its versions (gone from the store): the view goes back to the first page.
  await models.locator('button[data-page="next"]').click();
  await models.locator('button[data-page="next"]').click();
  await shown('Versions 101–133 of 133');
  await server.server.ctx.store.engine.run('DELETE FROM model_versions WHERE model = ? OR (model = ? AND seq > ?)', ['wine', 'iris', await seqOf('98')]);
  await shown('Versions 1–50 of more than 50');
  assert.deepEqual(pageErrors, []);
});

test('the decision log dates the decisions of another day, and the rollout list counts days', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const server = await serverWithFleet(t);
  if (!server) return;
  const id = await startRollout(server, [{ pause: {} }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Paused', 'its pause');
  // The operator looks three days later (the page's clock; its timers run as usual).
  await page.clock.setFixedTime(Date.now() + 3 * 86_400_000);
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#rollout-phase', { hasText: 'Paused' }).waitFor({ timeout: 5_000 });
  const { times, expected } = await page.evaluate(() => ({
    times: Array.from(document.querySelectorAll('#decision-log tbody tr td:first-child')).map((td) => td.textContent ?? ''),
    expected: new Date(Date.now() - 3 * 86_400_000).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' }),
  }));
  assert.ok(times.length > 0);
  for (const time of times) assert.match(time, new RegExp(`^${expected} \\d\\d:\\d\\d:\\d\\d$`), `a decision three days ago shows its date: ${time}`);
  assert.equal(await page.locator(`#rollouts tr[data-rollout="${id}"] td:last-child`).innerText(), '3 d ago');
  assert.deepEqual(pageErrors, []);
});

test('refreshing a rollout of hundreds of devices downloads a few of their per-device states (those the detail names), not all of them', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const server = await serverWithFleet(t);
  if (!server) return;
  const fleetStore = new FleetStore(server.server.ctx.store);
  const { artifactId } = await json<{ artifactId: string }>(await server.request('GET', '/api/models/iris/versions/1'));
  const active = { model: 'iris', version: '1', sha256: artifactId };
  for (let n = 3; n <= 300; n++) {
    const device = `dev-${String(n).padStart(3, '0')}`;
    const enrolled: Response = await server.request('POST', '/api/devices', { json: { id: device, labels: { site: 's1' } } });
    assert.equal(enrolled.status, 201, await enrolled.text());
    await fleetStore.repos.devices.setSlots(device, { active, candidate: null, previous: null }, new Date().toISOString());
  }
  const id = await startRollout(server, [{ pause: {} }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Paused', 'its pause');
  const detail = page.waitForResponse((response) => new URL(response.url()).pathname === `/api/rollouts/${id}`);
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#rollout-detail p', { hasText: 'Devices: total 300' }).waitFor({ timeout: 5_000 });
  const size = (await (await detail).body()).length;
  assert.ok(size < 10_000, `a refresh of the rollout downloads ${size} bytes`);
  assert.deepEqual(pageErrors, []);
});
