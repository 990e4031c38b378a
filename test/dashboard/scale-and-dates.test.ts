import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeArtifact, makeSigner, uploadBlobs } from '../server/helpers/artifacts.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { json, serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';

test('the models view lists every version of a model with more than one page of them, the newest too, and every model\'s in one request', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } });
  if (!server) return;
  // One set of files registered as 130 versions: more than the API's default page of 100.
  const artifact = await makeArtifact(t, { seed: 1, name: 'iris', version: '1', privateKey: signer.privateKey });
  await uploadBlobs(server, artifact.dir, artifact.manifest);
  for (let version = 1; version <= 130; version++) {
    const response: Response = await server.request('POST', '/api/models/iris/versions', { json: { manifest: signManifest({ ...artifact.manifest, version: String(version) }, signer.privateKey) } });
    assert.equal(response.status, 201, await response.text());
  }
  // And a few more models: the view asks for every model's versions at once, not model by model.
  for (const name of ['beer', 'wine', 'cider']) {
    const response: Response = await server.request('POST', `/api/models/${name}/versions`, { json: { manifest: signManifest({ ...artifact.manifest, name, version: '1' }, signer.privateKey) } });
    assert.equal(response.status, 201, await response.text());
  }
  const asked: string[] = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (/^\/api\/(models|versions)/.test(url.pathname)) asked.push(url.pathname + url.search);
  });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#models td', { hasText: /^iris@1$/ }).waitFor({ timeout: 5_000 });
  await page.locator('#models td', { hasText: /^iris@130$/ }).waitFor({ timeout: 5_000 });
  assert.equal(await page.locator('#models tbody tr').count(), 133);
  assert.deepEqual(await page.locator('#models tbody tr td:first-child').evaluateAll((cells) => cells.map((cell) => cell.textContent).filter((text) => !text!.startsWith('iris@'))), ['beer@1', 'cider@1', 'wine@1']);
  // One request a refresh (a timed refresh may have come meanwhile), for every version of every model.
  assert.ok(asked.length > 0 && asked.every((path) => path === '/api/versions?limit=1000'), asked.join(' '));
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
