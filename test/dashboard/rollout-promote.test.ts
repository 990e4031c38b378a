import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { rolloutState, serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

test('the dashboard promotes one step at a time with "Next step" (from the step it shows: refused once someone else promoted it), and to 100% only with "Promote to 100%" after a confirmation naming the steps it skips', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, dialogs, pageErrors, policyViolations } = browser;
  const server = await serverWithFleet(t);
  if (!server) return;
  const id = await startRollout(server, [{ pause: {} }, { pause: {} }, { pause: {} }, { setWeight: 50 }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Paused' && s.stepIndex === 0, 'a pause at step 1');

  const posts: string[] = [];
  // The page's reads of the rollout under way: one sent before the route below holds them is not held.
  const reading = new Set<unknown>();
  const isRolloutRead = (url: string) => new URL(url).pathname === `/api/rollouts/${id}`;
  page.on('request', (request) => {
    if (request.method() === 'POST') posts.push(new URL(request.url()).pathname + new URL(request.url()).search);
    else if (isRolloutRead(request.url())) reading.add(request);
  });
  page.on('requestfinished', (request) => reading.delete(request));
  page.on('requestfailed', (request) => reading.delete(request));
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}`);
  await page.locator('#rollout-detail .step.current', { hasText: '1. pause until resumed' }).waitFor({ timeout: 5_000 });
  const nextStep = page.locator('#rollout-detail button', { hasText: /^Next step$/ });
  const promoteAll = page.locator('#rollout-detail button', { hasText: /^Promote to 100%$/ });
  await nextStep.waitFor({ timeout: 5_000 });
  assert.ok(await nextStep.isEnabled(), 'a paused rollout can go on one step');
  assert.ok(await promoteAll.isEnabled(), 'a paused rollout can be promoted to 100%');
  assert.equal(await page.locator('#rollout-detail button', { hasText: /^Promote$/ }).count(), 0, 'no unlabelled promotion');

  // One step: POST …/promote?step=true from the step shown (index 0), no dialog (the step skipped is a pause), the rollout goes on to step 2 only.
  await nextStep.click();
  await page.locator('#rollout-detail .step.current', { hasText: '2. pause until resumed' }).waitFor({ timeout: 5_000 });
  const stepPost = (from: number) => `/api/rollouts/${id}/promote?step=true&fromStepIndex=${from}`;
  assert.deepEqual(posts, [stepPost(0)]);
  assert.deepEqual(dialogs, []);
  const afterStep = await rolloutState(server, id);
  assert.deepEqual([afterStep.phase, afterStep.stepIndex], ['Paused', 1], 'one step, not the whole rollout');

  // Someone else skips step 2 while the page still shows it (its reads of the rollout held back):
  // the page's "Next step" is from step 2 too, and is refused with the server's message, not a second skip.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let held = 0;
  const heldReads = new Set<unknown>();
  await page.route((url) => url.pathname === `/api/rollouts/${id}`, async (route) => {
    held++;
    heldReads.add(route.request());
    await released;
    await route.continue();
  });
  // A read sent before the route (a refresh after the first step) must be answered before the skip
  // elsewhere: answered after it, it would show step 3 (seen under load).
  const unheld = [...reading];
  for (const deadline = Date.now() + 7_000; unheld.some((request) => reading.has(request) && !heldReads.has(request)); await page.waitForTimeout(20)) assert.ok(Date.now() < deadline, 'the reads sent before the route are answered');
  const elsewhere = await server.request('POST', `/api/rollouts/${id}/promote?step=true&fromStepIndex=1`);
  assert.equal(elsewhere.status, 200, await elsewhere.text());
  // The rollout's event makes the page refresh; that read waits, so the page still shows step 2.
  for (const deadline = Date.now() + 7_000; held === 0; await page.waitForTimeout(50)) assert.ok(Date.now() < deadline, 'the page refreshes after the event');
  assert.equal(await page.locator('#rollout-detail .step.current').innerText(), '2. pause until resumed (current)');
  await nextStep.click();
  const message = page.locator('#error');
  await message.filter({ hasText: `rollout ${id} is already past step 2` }).waitFor({ timeout: 5_000 });
  assert.deepEqual(posts, [stepPost(0), stepPost(1)]);
  assert.equal(
    await message.innerText(),
    `Step 2 not skipped: rollout ${id} is already past step 2 (it is at step 3/5); not promoted again. The rollout changed since it was shown; the view now shows where it is. Dismiss`,
    'the message, and its Dismiss button (it stays until dismissed)',
  );
  release();
  await page.unrouteAll({ behavior: 'wait' }); // the held reads go on
  await page.locator('#rollout-detail .step.current', { hasText: '3. pause until resumed' }).waitFor({ timeout: 5_000 });
  const afterRace = await rolloutState(server, id);
  assert.deepEqual([afterRace.phase, afterRace.stepIndex], ['Paused', 2], 'two promotions from step 2: one step skipped, not two');
  assert.deepEqual(dialogs, []);

  // To 100%: asks first, naming every step it skips; dismissed, nothing is posted.
  await promoteAll.click();
  assert.equal(dialogs.length, 1, 'full promotion asks for confirmation');
  assert.match(dialogs[0]!, new RegExp(`^Promote ${id} to 100% now: iris@2 becomes active on all 2 of its devices at once, skipping the 3 remaining steps \\(3\\. pause until resumed; 4\\. set weight 50%; 5\\. set weight 100%\\)\\?$`));
  await page.waitForTimeout(300);
  assert.deepEqual(posts, [stepPost(0), stepPost(1)], 'a dismissed confirmation posts nothing');
  assert.equal((await rolloutState(server, id)).stepIndex, 2);

  // Accepted: POST …/promote; then nothing is left to promote and both buttons are off.
  browser.answerDialogs = 'accept';
  await promoteAll.click();
  assert.equal(dialogs.length, 2);
  await waitForRollout(server, id, (s) => s.stepStage === 'activating' || s.phase === 'Completed', 'full promotion');
  assert.deepEqual(posts, [stepPost(0), stepPost(1), `/api/rollouts/${id}/promote`]);
  await page.locator('#rollout-detail td', { hasText: `promoted to 100% by token:env-admin, skipping the remaining steps and analysis` }).waitFor({ timeout: 5_000 });
  assert.ok(await nextStep.isDisabled(), '"Next step" is off while the candidate is activated everywhere');
  assert.ok(await promoteAll.isDisabled(), '"Promote to 100%" is off while the candidate is activated everywhere');

  assert.deepEqual(pageErrors, []);
  assert.deepEqual(policyViolations, []);
});
