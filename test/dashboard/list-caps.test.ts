import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Request } from 'playwright-core';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import type { RolloutModule } from '../../server/rollout/rollout-module.ts';
import { balanceIsolates } from '../../server/dashboard/ui/bidi.ts';
import { renderRolloutPager, rolloutPageFrom } from '../../server/dashboard/ui/rollout-pages.ts';
import { StoreRolloutRepository } from '../../server/store/repositories/rollouts-repository.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { json, serverWithFleet, startRollout, waitForRollout } from './dashboard-fixtures.ts';

/** A right-to-left override after a pop-directional-isolate (which would close an isolate around it early). */
const RLO_REASON = 'the \u2069\u202Eevil reason';
const RLO_LABEL = 'x\u202Eevil label';
const BULK = 130;

test('the dashboard says what its rollout list and ε sweep leave out, pages to older rollouts, and isolates user text', async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const { page, pageErrors } = browser;
  const server = await serverWithFleet(t);
  if (!server) return;

  // One real rollout, rolled back with a reason holding a right-to-left override: the oldest.
  const id = await startRollout(server, [{ pause: {} }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Paused', 'its pause');
  // Stored as an older server would have (the API refuses an override now): through the service itself.
  const rollouts = server.server.modules.find((module) => 'service' in module && 'leadership' in module) as unknown as RolloutModule;
  await rollouts.service.command(id, 'rollback', { tokenId: 'admin', role: 'admin', label: 'admin' }, { reason: RLO_REASON });
  await waitForRollout(server, id, (s) => s.phase === 'RolledBack', 'its rollback');
  // 130 newer finished rollouts, written straight to the store (nothing drives a finished one).
  const repository = new StoreRolloutRepository(server.server.ctx.store.engine);
  const { state } = (await repository.load(id))!;
  for (let n = 1; n <= BULK; n++) await repository.create({ state: { ...state, id: `bulk-${String(n).padStart(3, '0')}` }, pendingActions: [], decisions: [] });
  // An old pruning job with a sweep, then a full page (100) of newer failed ones.
  const job = (n: number, fields: { state: 'succeeded' | 'failed'; result: unknown; error: string | null }) => {
    const at = new Date(Date.UTC(2026, 0, 1, 0, n)).toISOString();
    return server.server.ctx.store.jobs.insert({ id: `job-${n}`, kind: 'prune', request: {}, progress: null, createdAt: at, updatedAt: at, createdBy: 'test', node: null, ...fields });
  };
  const sweep = [0.1, 0.2].map((epsilon) => ({ epsilon, params: 100, paramCut: epsilon, test: { accuracy: 0.9 } }));
  await job(0, { state: 'succeeded', result: { summary: { sweep } }, error: null });
  for (let n = 1; n <= 100; n++) await job(n, { state: 'failed', result: null, error: 'bad data' });
  // A device whose middle label holds a right-to-left override: enrolled by a server from before
  // such values were refused (the API refuses it now), so stored straight into the store.
  const enrolled = await server.request('POST', '/api/devices', { json: { id: 'dev-rlo', labels: { a: 'first', b: 'plain', c: 'last' } } });
  assert.equal(enrolled.status, 201, await enrolled.text());
  await server.server.ctx.store.engine.run('UPDATE devices SET labels = ? WHERE id = ?', [JSON.stringify({ a: 'first', b: RLO_LABEL, c: 'last' }), 'dev-rlo']);

  await t.test('GET /api/rollouts pages with ?offset, says whether older ones follow and counts them all; GET /api/jobs counts every job', async () => {
    type Page = { rollouts: { id: string }[]; more: boolean; total: number };
    const first = await json<Page>(await server.request('GET', '/api/rollouts'));
    assert.deepEqual([first.rollouts.length, first.rollouts[0]!.id, first.more, first.total], [100, 'bulk-130', true, BULK + 1]);
    const older = await json<Page>(await server.request('GET', '/api/rollouts?offset=100&limit=100'));
    assert.deepEqual([older.rollouts.length, older.rollouts[0]!.id, older.rollouts.at(-1)!.id, older.more, older.total], [31, 'bulk-030', id, false, BULK + 1]);
    // Skipped in the store: an offset past 10,000 is no longer refused.
    const far = await json<Page>(await server.request('GET', '/api/rollouts?offset=20000'));
    assert.deepEqual([far.rollouts, far.more, far.total], [[], false, BULK + 1]);
    assert.deepEqual(await json(await server.request('GET', '/api/rollouts?model=beer')), { rollouts: [], more: false, total: 0, offset: 0 });
    // ?containing: the page that holds a rollout (a link to it opens its page), and where that page starts.
    const holding = async (query: string) => {
      const answer = await json<Page & { offset: number }>(await server.request('GET', `/api/rollouts?${query}`));
      return [answer.offset, answer.rollouts.length, answer.rollouts[0]?.id, answer.more];
    };
    assert.deepEqual(await holding(`containing=${id}`), [100, 31, 'bulk-030', false]);
    assert.deepEqual(await holding('containing=bulk-130'), [0, 100, 'bulk-130', true]);
    assert.deepEqual(await holding('containing=bulk-030&limit=40'), [80, 40, 'bulk-050', true]);
    assert.deepEqual(await holding('containing=bulk-031&limit=40'), [80, 40, 'bulk-050', true]);
    assert.deepEqual(await holding(`containing=${id}&model=iris&limit=7`), [126, 5, 'bulk-004', false]);
    const refused = async (query: string) => {
      const response = await server.request('GET', `/api/rollouts?${query}`);
      return [response.status, ((await response.json()) as { error: { message: string } }).error.message];
    };
    assert.deepEqual(await refused('containing=nope'), [404, 'no rollout nope']);
    assert.deepEqual(await refused(`containing=${id}&model=beer`), [404, `rollout ${id} is of model iris, not beer`]);
    assert.deepEqual(await refused(`containing=${id}&offset=0`), [400, 'query.containing: give ?offset or ?containing, not both']);
    assert.equal((await server.request('GET', '/api/rollouts?containing=a%20b')).status, 400);
    assert.equal((await json<Page>(await server.request('GET', '/api/rollouts?model=iris&limit=1&offset=3'))).total, BULK + 1);
    assert.equal((await server.request('GET', '/api/rollouts?offset=-1')).status, 400);
    assert.equal((await server.request('GET', '/api/rollouts?offset=1000000001')).status, 400);
    const jobs = await json<{ jobs: unknown[]; total: number }>(await server.request('GET', '/api/jobs'));
    assert.deepEqual([jobs.jobs.length, jobs.total], [100, 101]);
  });

  const listRequests: URLSearchParams[] = [];
  page.on('request', (request: Request) => {
    const url = new URL(request.url());
    if (url.pathname === '/api/rollouts') listRequests.push(url.searchParams);
  });
  await page.goto(`${server.baseUrl}/dashboard/#token=${ADMIN_TOKEN}&rollout=${id}`);
  await page.locator('#rollout-phase', { hasText: 'RolledBack' }).waitFor({ timeout: 5_000 });

  await t.test('a right-to-left override in a rollback reason does not move the actor, named once before it', async () => {
    await page.locator('#rollout-detail tbody td', { hasText: 'evil reason' }).first().waitFor({ timeout: 5_000 });
    // Found and measured in one go: every refresh renders the detail anew. The message names the
    // actor ("rolled back by token:…: reason"), so the dashboard adds no second "by" after it.
    const boxes = await page.evaluate(() => {
      const td = Array.from(document.querySelectorAll('#rollout-detail tbody td')).find((cell) => cell.textContent?.includes('evil reason'))!;
      const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
      const box = (needle: string) => {
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const at = node.textContent!.indexOf(needle);
          if (at < 0) continue;
          const range = document.createRange();
          range.setStart(node, at);
          range.setEnd(node, at + needle.length);
          const rects = Array.from(range.getClientRects()).filter((r) => r.width > 0);
          return { left: Math.min(...rects.map((r) => r.left)), right: Math.max(...rects.map((r) => r.right)), top: Math.min(...rects.map((r) => r.top)) };
        }
        return null;
      };
      const by = box('by token:');
      walker.currentNode = td;
      const reason = box('evil reason');
      return { by, reason, actors: td.textContent!.split('by token:').length - 1 };
    });
    assert.equal(boxes.actors, 1, `the actor is named once: ${JSON.stringify(boxes)}`);
    assert.ok(boxes.by && boxes.reason, `both found: ${JSON.stringify(boxes)}`);
    assert.ok(Math.abs(boxes.by.top - boxes.reason.top) < 2, `one line: ${JSON.stringify(boxes)}`);
    assert.ok(boxes.by.right <= boxes.reason.left + 1, `"by …" stays left of the reason: ${JSON.stringify(boxes)}`);
  });

  await t.test('a right-to-left override in a device label does not reorder the labels and status after it', async () => {
    const row = page.locator('#fleet tr[data-device="dev-rlo"]');
    await row.waitFor({ timeout: 5_000 });
    const lefts = await page.evaluate(() => Array.from(document.querySelectorAll('#fleet tr[data-device="dev-rlo"] .badge')).map((badge) => [badge.textContent, badge.getBoundingClientRect().left] as const));
    assert.deepEqual(lefts.map(([text]) => text), ['a=first', `b=${RLO_LABEL}`, 'c=last', 'offline']);
    for (let i = 1; i < lefts.length; i++) assert.ok(lefts[i]![1] > lefts[i - 1]![1], `badge ${i} is right of the one before it: ${JSON.stringify(lefts)}`);
  });

  await t.test('the ε sweep says it looked only at the newest 100 of the 101 jobs when none of them has a sweep', async () => {
    const note = page.locator('#sweep-note');
    await note.waitFor({ timeout: 5_000 });
    assert.match(await note.innerText(), /none of the newest 100 of 101 jobs is a finished pruning job with a sweep, and older jobs are not searched/);
  });

  await t.test('the rollout list counts what it shows and pages to the older rollouts, refreshing only the page shown', async () => {
    const count = page.locator('#rollouts-count');
    // The link opened the page that holds the linked rollout, the older one, with it selected.
    await count.filter({ hasText: `Rollouts 101–${BULK + 1}, newest first, of ${BULK + 1}` }).waitFor({ timeout: 5_000 });
    assert.equal(await page.locator(`#rollouts tr[data-rollout="${id}"]`).getAttribute('aria-current'), 'true', 'the linked rollout is selected on its page');
    assert.equal(String(listRequests[0]), `limit=100&containing=${id}`, 'the first list request asks for the page that holds it');
    await page.locator('button[data-page="newer"]').click();
    // Counted on the first page too.
    await count.filter({ hasText: `Rollouts 1–100, newest first, of ${BULK + 1}` }).waitFor({ timeout: 5_000 });
    assert.equal(await page.locator('#rollouts tbody tr').count(), 100);
    assert.equal(await page.locator('#rollouts tbody tr').first().getAttribute('data-rollout'), 'bulk-130');
    assert.ok(await page.locator('button[data-page="newer"]').isDisabled());

    await page.locator('button[data-page="older"]').click();
    await count.filter({ hasText: `Rollouts 101–${BULK + 1}, newest first, of ${BULK + 1}` }).waitFor({ timeout: 5_000 });
    assert.equal(await page.locator('#rollouts tbody tr').count(), BULK + 1 - 100);
    assert.equal(await page.locator(`#rollouts tr[data-rollout="${id}"]`).getAttribute('aria-current'), 'true', 'the linked rollout is selected on its page');
    assert.ok(await page.locator('button[data-page="older"]').isDisabled());
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.page), 'newer', 'the focus stays on the pager');

    // The next timed refresh asks for the page shown, and only that page.
    const asked = listRequests.length;
    await page.waitForRequest((request) => new URL(request.url()).pathname === '/api/rollouts', { timeout: 7_000 });
    assert.deepEqual(listRequests.slice(asked).map(String), ['limit=100&offset=100']);
    assert.ok(listRequests.length > 0 && listRequests.every((params) => params.get('limit') === '100'), `every list request asks for one page: ${listRequests.map(String).join(' ')}`);
  });

  await t.test('a page turn while a refresh of the page shown is on its way never shows that page again', async () => {
    // List requests are held: the timed refresh of page 2 is on its way when "Newer" is clicked.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const isList = (url: URL) => url.pathname === '/api/rollouts';
    await page.route(isList, async (route) => {
      await released;
      await route.continue();
    });
    try {
      await page.waitForRequest((request) => isList(new URL(request.url())), { timeout: 7_000 });
      await page.evaluate(() => {
        const seen: string[] = ((window as unknown as { pagerTexts: string[] }).pagerTexts = []);
        const list = document.getElementById('rollouts')!;
        new MutationObserver(() => seen.push(list.querySelector('#rollouts-count')?.textContent ?? '')).observe(list, { childList: true, subtree: true, characterData: true });
      });
      await page.locator('button[data-page="newer"]').click();
      release();
      // The refresh under way ends first, then the one the click queued: two refreshes.
      await page.locator('#rollouts-count').filter({ hasText: `Rollouts 1–100, newest first, of ${BULK + 1}` }).waitFor({ timeout: 10_000 });
      const seen = await page.evaluate(() => (window as unknown as { pagerTexts: string[] }).pagerTexts);
      assert.ok(seen.length > 0, 'the page turn was rendered');
      assert.deepEqual(seen.filter((text) => text.includes('101–')), [], `the page left behind came back: ${seen.join(' | ')}`);
    } finally {
      release();
      await page.unroute(isList);
    }
  });

  assert.deepEqual(pageErrors, []);
});

test('user text is shown with its bidi isolates balanced: no stray pop closes the isolate around it, none stays open past it', () => {
  assert.equal(balanceIsolates('a\u2069\u202Eb'), 'a\u202Eb');
  assert.equal(balanceIsolates('\u2067x'), '\u2067x\u2069');
  assert.equal(balanceIsolates('\u2066x\u2069\u2069y'), '\u2066x\u2069y');
  assert.equal(balanceIsolates('plain'), 'plain');
});

test('the rollout pager says "of N" as the server counts them; without a count (an older server), exactly on the last page and "more than" before', () => {
  const text = (html: string) => html.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  assert.equal(text(renderRolloutPager(0, 3, false)), 'All 3 rollouts');
  assert.equal(renderRolloutPager(0, 0, false), '');
  assert.equal(text(renderRolloutPager(0, 100, true)), 'Rollouts 1–100, newest first, of more than 100 ‹ Newer Older ›');
  assert.equal(text(renderRolloutPager(200, 7, false)), 'Rollouts 201–207, newest first, of 207 ‹ Newer Older ›');
  assert.match(renderRolloutPager(200, 7, false), /data-page="older"[^>]*disabled/);
  assert.equal(text(renderRolloutPager(300, 0, false)), 'No rollouts from number 301 on ‹ Newer Older ›');
  assert.equal(text(renderRolloutPager(0, 100, true, 131)), 'Rollouts 1–100, newest first, of 131 ‹ Newer Older ›');
  assert.equal(text(renderRolloutPager(100, 31, false, 131)), 'Rollouts 101–131, newest first, of 131 ‹ Newer Older ›');
  assert.equal(text(renderRolloutPager(100, 32, false, 131)), 'Rollouts 101–132, newest first, of 132 ‹ Newer Older ›', 'never fewer than shown');
  assert.equal(text(renderRolloutPager(300, 0, false, 131)), 'No rollouts from number 301 on (131 rollouts in all) ‹ Newer Older ›');
  assert.equal(text(renderRolloutPager(0, 3, false, 3)), 'All 3 rollouts');
  assert.deepEqual(rolloutPageFrom({ rollouts: [1], more: true, total: 131 }), { rollouts: [1], more: true, total: 131 });
  assert.deepEqual(rolloutPageFrom({ rollouts: [1] }), { rollouts: [1], more: false });
});
