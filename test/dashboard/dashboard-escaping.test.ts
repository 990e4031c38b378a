import assert from 'node:assert/strict';
import { test } from 'node:test';
import { misbehavingServer } from '../helpers/misbehaving-http.ts';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { artifactId } from '../../shared/artifact/manifest.ts';

/** Each payload sets window.__xss if the browser ever parses it as markup. */
const IMG = `<img src=x onerror="window.__xss='img'">`;
const SVG = `"><svg onload=window.__xss='svg'>`;
const ATTR = `' onmouseover='window.__xss=1' x='`;
const SCRIPT = `</td><script>window.__xss='script'</script>`;

/** Free text each public API accepts, one distinct payload per place it is stored. */
const LABEL_SITE = `s1${IMG}`; // a device label value, and (≤ 63 characters) the rollout's selectors
const LABEL_NOTE = `note ${SVG} ${ATTR} ${SCRIPT} & &amp; done`; // a device label value (≤ 256)
const ROLLBACK_REASON = `reason ${IMG} ${SVG} ${ATTR}`; // ?reason= on rollback (≤ 500)
const PROM_ERROR_TYPE = `bad_data${SVG}`; // a Prometheus error answer's errorType (kept ≤ 100)
const PROM_ERROR = `parse error ${IMG} ${SCRIPT}`; // and its error text (kept ≤ 500)

async function json<T>(response: Response): Promise<T> {
  const body = await response.text();
  assert.ok(response.ok, `${response.status}: ${body}`);
  return JSON.parse(body) as T;
}

async function waitForPhase(server: TestServer, id: string, phases: readonly string[]): Promise<{ phase: string; outcome: { reason: string } | null }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const view = await json<{ phase: string; outcome: { reason: string } | null }>(await server.request('GET', `/api/rollouts/${id}`));
    if (phases.includes(view.phase)) return view;
    if (Date.now() > deadline) throw new Error(`rollout ${id} stayed ${view.phase}, expected ${phases.join(' or ')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('the dashboard shows hostile stored strings (labels, selectors, rollback reasons, Prometheus errors) as inert text', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, dialogs, pageErrors, policyViolations } = browser;
  // A "Prometheus" whose every answer is an error carrying markup.
  const prometheus = await misbehavingServer((_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'error', errorType: PROM_ERROR_TYPE, error: PROM_ERROR }));
  });
  t.after(() => prometheus.close());
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath], prometheusUrl: prometheus.url } });
  if (!server) return;

  // Tiny signed versions (no training), 1 and 2 of two models: one model per rollout, as a model
  // has one unfinished rollout at a time. A rollout targets devices running its model (version 1).
  const fleetStore = new FleetStore(server.server.ctx.store);
  for (const [seed, model, device] of [[1, 'iris', 'dev-01'], [3, 'wine', 'dev-02']] as const) {
    const pushed: string[] = [];
    for (const version of ['1', '2']) {
      const artifact = await makeArtifact(t, { seed: seed + Number(version) - 1, name: model, privateKey: signer.privateKey, version });
      const response = await pushArtifact(server, model, artifact.dir, artifact.manifest);
      assert.equal(response.status, 201, await response.text());
      pushed.push(artifactId(artifact.manifest));
    }
    const enrolled = await server.request('POST', '/api/devices', { json: { id: device, labels: { site: LABEL_SITE, note: LABEL_NOTE } } });
    assert.equal(enrolled.status, 201, await enrolled.text());
    await fleetStore.repos.devices.setSlots(device, { active: { model, version: '1', sha256: pushed[0]! }, candidate: null, previous: null }, new Date().toISOString());
  }

  // Rollout 1: its analysis asks the hostile Prometheus; the error text lands in the decision log and the outcome.
  const target = { matchLabels: { site: LABEL_SITE } };
  const analysed = await json<{ id: string }>(
    await server.request('POST', '/api/rollouts', {
      json: {
        model: 'iris',
        candidateVersion: '2',
        target,
        steps: [
          { analysis: { metrics: [{ name: 'prom-error', count: 1, consecutiveErrorLimit: 0, successCondition: 'result[0] >= 0', provider: { prometheus: { query: 'up' } } }] } },
          { setWeight: 100 },
        ],
      },
    }),
  );
  const analysedView = await waitForPhase(server, analysed.id, ['Failed', 'RolledBack', 'Aborted']);
  const decisions = JSON.stringify(await json(await server.request('GET', `/api/rollouts/${analysed.id}`)));
  assert.ok(decisions.includes(JSON.stringify(PROM_ERROR).slice(1, -1)), `the Prometheus error text is stored in the decision log (phase ${analysedView.phase}, ${analysedView.outcome?.reason})`);

  // Rollout 2: a hostile selector step (step description, decision log), then rolled back with a hostile reason.
  const rolledBack = await json<{ id: string }>(
    await server.request('POST', '/api/rollouts', {
      json: { model: 'wine', candidateVersion: '2', target, steps: [{ pause: {} }, { selector: target }, { setWeight: 100 }] },
    }),
  );
  const rollback = await server.request('POST', `/api/rollouts/${rolledBack.id}/rollback?reason=${encodeURIComponent(ROLLBACK_REASON)}`);
  assert.equal(rollback.status, 200, await rollback.text());
  const rolledBackView = await waitForPhase(server, rolledBack.id, ['RolledBack']);
  assert.ok(rolledBackView.outcome?.reason.endsWith(`: ${ROLLBACK_REASON}`), `the reason is stored verbatim: ${rolledBackView.outcome?.reason}`);

  const response = await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  // Behind the escaping, a policy that would stop inline handlers (the checks below do not rely on it).
  assert.match(response?.headers()['content-security-policy'] ?? '', /(^|; )script-src 'self'(;|$)/);
  // The newest rollout (the rolled-back one) is selected first.
  await page.locator('#rollout-phase', { hasText: 'RolledBack' }).waitFor({ timeout: 5_000 });
  await page.locator('#fleet tr[data-device="dev-01"]').waitFor({ timeout: 5_000 });
  assert.equal(new URL(page.url()).hash, '', 'the token is taken out of the address bar and the history');

  const injected = () =>
    page.evaluate(() => ({
      xss: (window as unknown as { __xss?: unknown }).__xss,
      elements: Array.from(document.querySelectorAll('img, svg, script:not([src]), [onerror], [onload], [onmouseover]')).map((element) => element.outerHTML.slice(0, 120)),
    }));
  const text = async (selector: string) => (await page.locator(selector).innerText()).replace(/\s+/g, ' ');
  const assertInert = async (where: string) => {
    // Give any injected handler (img onerror fires after a failed load) time to run.
    await page.waitForTimeout(200);
    const found = await injected();
    assert.equal(found.xss, undefined, `${where}: an injected handler ran`);
    assert.deepEqual(found.elements, [], `${where}: the page holds injected elements`);
  };

  await assertInert('rolled-back rollout selected');
  const fleet = await text('#fleet');
  assert.ok(fleet.includes(`site=${LABEL_SITE}`), `the fleet view shows the site label literally: ${fleet}`);
  assert.ok(fleet.includes(`note=${LABEL_NOTE}`), `the fleet view shows the note label literally: ${fleet}`);
  const list = await text('#rollouts');
  assert.ok(list.includes(ROLLBACK_REASON), `the rollout list shows the rollback reason literally: ${list}`);
  assert.ok(list.includes(PROM_ERROR), `the rollout list shows the Prometheus error literally: ${list}`);
  const detail = await text('#rollout-detail');
  assert.ok(detail.includes(`Outcome: rolled-back: rolled back by token:env-admin: ${ROLLBACK_REASON}`), `the detail shows the rollback reason literally: ${detail}`);
  assert.ok(detail.includes(`2. devices matching site=${LABEL_SITE}`), `the detail shows the selector step literally: ${detail}`);
  assert.ok(detail.includes(`(site=${LABEL_SITE}) in 3 steps`), `the decision log shows the target selector literally: ${detail}`);
  assert.equal(await page.locator('#rollout-detail .step', { hasText: LABEL_SITE }).count(), 1, 'the selector step is one step element whose text holds the payload');

  // Select the analysed rollout: its decision log carries Prometheus' error type and text.
  await page.locator(`tr[data-rollout="${analysed.id}"]`).click();
  await page.locator('#rollout-detail h3', { hasText: analysed.id }).waitFor({ timeout: 5_000 });
  await assertInert('analysed rollout selected');
  const analysedDetail = await text('#rollout-detail');
  assert.ok(analysedDetail.includes(PROM_ERROR_TYPE), `the decision log shows the Prometheus error type literally: ${analysedDetail}`);
  assert.ok(analysedDetail.includes(PROM_ERROR), `the decision log shows the Prometheus error literally: ${analysedDetail}`);

  assert.deepEqual(dialogs, [], 'no dialog opened');
  assert.deepEqual(pageErrors, [], 'the dashboard raised no error');
  assert.deepEqual(policyViolations, [], 'nothing the dashboard does itself is blocked by its policy');
});
