import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderRolloutDetail } from '../../server/dashboard/ui/rollouts-view.ts';
import { detailFixture } from './rollout-detail-fixture.ts';

const titleOf = (html: string, action: string) => new RegExp(`<button data-action="${action}"[^>]* title="([^"]*)"`).exec(html)?.[1];

// A finished rollout's disabled "Promote to 100%" still offered to "Skip every remaining step and analysis".
test('the promote buttons of a finished rollout say there is nothing left to promote; a running one says what they skip', () => {
  const running = renderRolloutDetail(detailFixture());
  assert.equal(titleOf(running, 'promote-full'), 'Skip every remaining step and analysis (asks first)');
  assert.equal(titleOf(running, 'promote-step'), 'Skip step 1. setWeight 50 and go on with 2. setWeight 100');
  const finished = renderRolloutDetail(detailFixture({ phase: 'Completed', terminal: true, stepIndex: 2, outcome: { status: 'completed', reason: 'promoted', at: '2026-12-01T10:00:00.000Z' } }));
  assert.equal(titleOf(finished, 'promote-full'), 'Nothing left to promote');
  assert.equal(titleOf(finished, 'promote-step'), 'Nothing left to promote');
});
