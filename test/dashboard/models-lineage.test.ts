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
