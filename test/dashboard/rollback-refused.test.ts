import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderRolloutDetail } from '../../server/dashboard/ui/rollouts-view.ts';
import { detailFixture } from './rollout-detail-fixture.ts';

const rollbackButton = (html: string) => {
  const button = /<button data-action="rollback"[^>]*>/.exec(html)?.[0];
  assert.ok(button, 'a Roll back button');
  return { disabled: /\sdisabled[\s>]/.test(button), title: /title="([^"]*)"/.exec(button)?.[1] ?? null };
};

/**
 * A failed rollout with a device not back on its baseline kept *Roll back* enabled after a newer
 * rollout of the model started, and the server refused the click (409: rolling it back would undo
 * the newer one). The detail's `rollbackRefused` now says so first: the button is off, and its
 * tooltip names the rollout to roll back instead.
 */
test('"Roll back" is disabled, saying which rollout to roll back instead, when the server would refuse it because a newer rollout came after', () => {
  const failed = { phase: 'Failed', terminal: true, outcome: { status: 'failed', reason: 'accuracy', at: '2026-12-01T10:00:00.000Z' }, notBackOnBaseline: 1 };
  assert.deepEqual(rollbackButton(renderRolloutDetail(detailFixture({ ...failed, rollbackRefused: null }))), { disabled: false, title: null }, 'a device not back: another rollback may send it');
  const refused = 'rollout ro-2 of wine (Paused, 3) came after this one; rolling this one back would undo it: roll back ro-2 instead';
  assert.deepEqual(rollbackButton(renderRolloutDetail(detailFixture({ ...failed, rollbackRefused: refused }))), { disabled: true, title: refused });
  const promoted = { phase: 'Completed', terminal: true, outcome: { status: 'completed', reason: 'promoted', at: '2026-12-01T10:00:00.000Z' } };
  assert.equal(rollbackButton(renderRolloutDetail(detailFixture({ ...promoted, rollbackRefused: null }))).disabled, false, 'a promoted rollout, the newest: it may be rolled back');
  assert.equal(rollbackButton(renderRolloutDetail(detailFixture({ ...promoted, rollbackRefused: refused }))).disabled, true, 'a promoted rollout a newer one came after');
});
