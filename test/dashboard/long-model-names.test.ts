import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { json, TARGET } from './dashboard-fixtures.ts';

/** A model name of the most characters a name may have, without a break (W: the widest letter). */
const LONG = 'W'.repeat(64);

/**
 * A model name of 64 characters could not wrap in the rollout list, the rollout's title and the
 * Models table: its cell widened the table until the phase, step and reason (ε, params, test,
 * status) were off to the right of its box, at 1280 px, at 200% zoom (640 CSS px) and on a phone.
 * model@version wraps in its cell, as a device id does.
 */
test('a 64-character model name wraps in the rollout list, the rollout title and the Models table: the other columns stay in view', { timeout: 60_000 }, async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } });
  if (!server) return;
  const general = await makeArtifact(t, { seed: 1, name: LONG, version: '1', privateKey: signer.privateKey });
  const pruned = await makeArtifact(t, { seed: 2, name: LONG, version: '2', privateKey: signer.privateKey, parent: artifactId(general.manifest) });
  for (const artifact of [general, pruned]) {
    const response = await pushArtifact(server, LONG, artifact.dir, artifact.manifest);
    assert.equal(response.status, 201, await response.text());
  }
  const enrolled = await server.request('POST', '/api/devices', { json: { id: 'dev-01', labels: { site: 's1' } } });
  assert.equal(enrolled.status, 201, await enrolled.text());
  await new FleetStore(server.server.ctx.store).repos.devices.setSlots('dev-01', { active: { model: LONG, version: '1', sha256: artifactId(general.manifest) }, candidate: null, previous: null }, new Date().toISOString());
  const { id } = await json<{ id: string }>(await server.request('POST', '/api/rollouts', { json: { model: LONG, candidateVersion: '2', target: TARGET, steps: [{ pause: {} }, { setWeight: 100 }] } }));

  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator(`#rollouts tr[data-rollout="${id}"]`).waitFor({ timeout: 5_000 });
  await page.locator('#rollout-title').waitFor({ timeout: 5_000 });
  await page.locator('#models tbody tr').nth(1).waitFor({ timeout: 5_000 });

  /**
   * The cells past the right edge of their table's scroll box, the widest model@version cell (the
   * rollout's candidate; the version and its lineage), and whether the title or the page overflows.
   */
  const layout = () =>
    page.evaluate(() => {
      const outOfView = (view: string) => {
        const wrap = document.querySelector<HTMLElement>(`${view} .table-wrap`)!;
        const right = wrap.getBoundingClientRect().right;
        return Array.from(wrap.querySelectorAll('tbody td')).filter((cell) => cell.getBoundingClientRect().right > right + 1).length;
      };
      const names = Array.from(document.querySelectorAll('#rollouts tbody td:nth-child(2), #models tbody td:nth-child(-n+2)'));
      const title = document.querySelector<HTMLElement>('#rollout-title')!;
      const section = document.querySelector<HTMLElement>('#rollouts-section')!;
      return {
        rollouts: outOfView('#rollouts'),
        models: outOfView('#models'),
        widestName: Math.max(...names.map((cell) => cell.getBoundingClientRect().width)),
        titleOverflows: title.scrollWidth > title.clientWidth || section.scrollWidth > section.clientWidth,
        page: document.documentElement.scrollWidth - window.innerWidth,
      };
    });
  const desktop = await layout();
  assert.deepEqual({ ...desktop, widestName: undefined }, { rollouts: 0, models: 0, widestName: undefined, titleOverflows: false, page: 0 }, `at 1280 px every column is in view: ${JSON.stringify(desktop)}`);
  // 200% zoom of a 1280 px window lays out as a 640 px one, and a phone at 360 px: the tables scroll
  // sideways (a reason keeps a readable width), but the name wraps within a readable width rather
  // than adding 600 px to them.
  for (const width of [640, 360]) {
    await page.setViewportSize({ width, height: 900 });
    await page.waitForTimeout(200);
    const narrow = await layout();
    assert.ok(narrow.widestName <= 160, `at ${width} px the model@version cells wrap: ${JSON.stringify(narrow)}`);
    assert.deepEqual([narrow.titleOverflows, narrow.page], [false, 0], `at ${width} px neither the title nor the page is wider than the screen: ${JSON.stringify(narrow)}`);
  }
  assert.deepEqual(pageErrors, []);
});
