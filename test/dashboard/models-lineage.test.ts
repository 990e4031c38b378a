import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer } from '../server/helpers/test-server.ts';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { openDashboardPage } from './dashboard-browser.ts';

const UNREGISTERED = 'ab'.repeat(32);

/**
 * A version whose parent is not registered showed `abababababab… (unregistered) → 5`: the child
 * without its model's name, where a registered parent's shows `iris@1 → iris@2`.
 */
test('the Models view names the model of a version whose parent is unregistered, as it does for a registered parent', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } });
  if (!server) return;
  const general = await makeArtifact(t, { seed: 1, name: 'iris', version: '1', privateKey: signer.privateKey });
  const pruned = await makeArtifact(t, { seed: 2, name: 'iris', version: '2', privateKey: signer.privateKey, parent: artifactId(general.manifest) });
  const orphan = await makeArtifact(t, { seed: 3, name: 'wine', version: '5', privateKey: signer.privateKey, parent: UNREGISTERED });
  for (const [model, artifact] of [['iris', general], ['iris', pruned], ['wine', orphan]] as const) {
    const response = await pushArtifact(server, model, artifact.dir, artifact.manifest);
    assert.equal(response.status, 201, await response.text());
  }
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  const lineage = page.locator('#models tbody tr td:nth-child(2)');
  await page.locator('#models td', { hasText: /^wine@5$/ }).waitFor({ timeout: 5_000 });
  assert.deepEqual(await lineage.allInnerTexts(), ['general model', 'iris@1 → iris@2', 'abababababab… (unregistered) → wine@5']);
  assert.deepEqual(pageErrors, []);
});

/**
 * The Models view never showed a version's data fingerprint, so an operator could not tell whether
 * two versions were trained on the same data; and the ε sweep chart named neither the job nor its
 * model, nor which ε the job chose: among hundreds of models it could not be attributed.
 */
test('the Models view shows each version’s data fingerprint, and the ε sweep chart names its job, its model and the ε chosen', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } });
  if (!server) return;
  const data = `${'c0ffee'.repeat(10)}abcd`;
  const general = await makeArtifact(t, { seed: 1, name: 'wine', version: '1', privateKey: signer.privateKey, dataFingerprint: data });
  const pruned = await makeArtifact(t, { seed: 2, name: 'wine', version: '2', privateKey: signer.privateKey, dataFingerprint: data, parent: artifactId(general.manifest) });
  const other = await makeArtifact(t, { seed: 3, name: 'wine', version: '3', privateKey: signer.privateKey, dataFingerprint: 'f'.repeat(64) });
  for (const artifact of [general, pruned, other]) {
    const response = await pushArtifact(server, 'wine', artifact.dir, artifact.manifest);
    assert.equal(response.status, 201, await response.text());
  }
  // The pruning job that registered wine@1 and wine@2, as a finished job's record holds it.
  const sweep = [0.1, 0.2, 0.3].map((epsilon) => ({ epsilon, params: 100, paramCut: epsilon, test: { accuracy: 0.9 }, weights: 'retrained' }));
  const at = new Date().toISOString();
  await server.server.ctx.store.jobs.insert({
    id: 'job-wine-7',
    kind: 'prune',
    request: { name: 'wine', label: 'kind', data: { path: 'wine.csv' } },
    progress: null,
    createdAt: at,
    updatedAt: at,
    createdBy: 'test',
    node: null,
    state: 'succeeded',
    result: { general: { model: 'wine', version: '1', artifactId: artifactId(general.manifest) }, pruned: { model: 'wine', version: '2', artifactId: artifactId(pruned.manifest) }, summary: { epsilon: 0.2, sweep } },
    error: null,
  });

  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#models td', { hasText: /^wine@3$/ }).waitFor({ timeout: 5_000 });
  const headers = await page.locator('#models thead th').allInnerTexts();
  const column = headers.indexOf('data');
  assert.ok(column >= 0, `a column shows the data: ${headers.join(' | ')}`);
  const cells = page.locator(`#models tbody tr td:nth-child(${column + 1})`);
  assert.deepEqual(await cells.allInnerTexts(), ['c0ffeec0ffee…', 'c0ffeec0ffee…', 'ffffffffffff…']);
  assert.deepEqual(await cells.locator('[title]').evaluateAll((spans) => spans.map((span) => span.getAttribute('title'))), [data, data, 'f'.repeat(64)].map((full) => `data fingerprint ${full}`));

  const chart = page.locator('#sweep-chart');
  await chart.locator('h3').waitFor({ timeout: 5_000 });
  assert.equal(await chart.locator('h3').innerText(), 'ε sweep of pruning job job-wine-7 (model wine)');
  assert.equal(await chart.locator('#sweep-chosen').innerText(), 'The job chose ε 0.2 (the dashed line): wine@2.');

  // A newer job that pruned at an absolute ε: the chart says so, as the Models table and models show do.
  const later = new Date(Date.now() + 1000).toISOString();
  await server.server.ctx.store.jobs.insert({
    id: 'job-wine-8',
    kind: 'prune',
    request: { name: 'wine', label: 'kind', data: { path: 'wine.csv' }, options: { epsilonMode: 'absolute', epsilons: [0.5, 1] } },
    progress: null,
    createdAt: later,
    updatedAt: later,
    createdBy: 'test',
    node: null,
    state: 'succeeded',
    result: { general: { model: 'wine', version: '1', artifactId: artifactId(general.manifest) }, pruned: { model: 'wine', version: '2', artifactId: artifactId(pruned.manifest) }, summary: { epsilon: 0.5, sweep: sweep.map((point, i) => ({ ...point, epsilon: [0.5, 1, 2][i]! })) } },
    error: null,
  });
  await chart.locator('h3', { hasText: 'job-wine-8' }).waitFor({ timeout: 15_000 });
  assert.equal(await chart.locator('#sweep-chosen').innerText(), 'The job chose ε 0.5 (absolute) (the dashed line): wine@2.');
  assert.deepEqual(pageErrors, []);
});
