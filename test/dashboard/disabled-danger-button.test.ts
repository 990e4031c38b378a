import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { renderRolloutDetail } from '../../server/dashboard/ui/rollouts-view.ts';
import { openDashboardPage } from './dashboard-browser.ts';
import { detailFixture } from './rollout-detail-fixture.ts';

const CSS = new URL('../../server/dashboard/ui/dashboard.css', import.meta.url);

/**
 * On a rolled-back rollout *Roll back* and *Promote to 100%* are disabled but kept their red text
 * and border (and a pointer cursor would say the same): they looked clickable.
 */
test('a disabled danger button looks disabled in Chromium: not the red text and border of an enabled one, no pointer cursor', { timeout: 60_000 }, async (t) => {
  const browser = await openDashboardPage(t, 'dismiss');
  if (!browser) return;
  const css = await readFile(CSS, 'utf8');
  const enabled = renderRolloutDetail(detailFixture());
  const rolledBack = renderRolloutDetail(detailFixture({ phase: 'RolledBack', terminal: true, outcome: { status: 'rolled-back', reason: 'rolled back by token:ops', at: '2026-12-01T10:00:00.000Z' }, notBackOnBaseline: 0 }));
  await browser.page.setContent(`<!doctype html><html><head><style>${css}</style></head><body><div id="on">${enabled}</div><div id="off">${rolledBack}</div></body></html>`);
  const style = (selector: string) =>
    browser.page.$eval(selector, (element) => {
      const computed = getComputedStyle(element);
      return { disabled: (element as HTMLButtonElement).disabled, color: computed.color, borderColor: computed.borderTopColor, cursor: computed.cursor };
    });
  for (const action of ['rollback', 'promote-full']) {
    const on = await style(`#on button[data-action="${action}"]`);
    const off = await style(`#off button[data-action="${action}"]`);
    assert.equal(on.disabled, false, `${action} is enabled on a progressing rollout`);
    assert.equal(off.disabled, true, `${action} is disabled on a rolled-back rollout`);
    assert.equal(on.cursor, 'pointer', `an enabled ${action} shows a pointer: ${JSON.stringify(on)}`);
    assert.notEqual(off.color, on.color, `a disabled ${action} is not drawn in the enabled danger colour: ${JSON.stringify({ on, off })}`);
    assert.notEqual(off.borderColor, on.borderColor, `a disabled ${action} has no danger border: ${JSON.stringify({ on, off })}`);
    assert.notEqual(off.cursor, 'pointer', `a disabled ${action} shows no pointer: ${JSON.stringify(off)}`);
  }
  assert.deepEqual(browser.pageErrors, [], 'no page errors');
});
