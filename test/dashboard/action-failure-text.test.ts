import assert from 'node:assert/strict';
import { test } from 'node:test';
import { actionFailureText, rolloutAction, type MessageParts } from '../../server/dashboard/ui/rollouts-view.ts';
import { detailFixture } from './rollout-detail-fixture.ts';

const plain = (parts: MessageParts) => parts.map((part) => (typeof part === 'string' ? part : `[${part.user}]`)).join('');

/**
 * A failed action said only the server's words ("Failed to fetch" when no answer came), and hid
 * itself after 6 s: the operator could not tell that a fleet rollback had not happened, or might
 * have. The message names the action and the rollout, and says when the outcome is not known.
 */
test('a failed action names what was not done and on which rollout; with no answer, that it may have been done', () => {
  const r = detailFixture();
  const rollback = rolloutAction('rollback', r)!;
  assert.equal(plain(actionFailureText(rollback, r.id, { status: 409, message: 'rollout ro-1 is already rolled back' })), 'Roll back of [ro-1] was not done: [rollout ro-1 is already rolled back]');
  assert.equal(
    plain(actionFailureText(rollback, r.id, { message: 'Failed to fetch' })),
    'Roll back of [ro-1]: the server did not answer ([Failed to fetch]), so it may or may not have been done. The view shows the rollout as the server has it once a refresh gets through: look at it before you try again.',
  );
  assert.match(plain(actionFailureText(rolloutAction('abort', r)!, r.id, { status: 403, message: 'forbidden' })), /^Abort of \[ro-1\] was not done: \[forbidden\]$/);
  // A step someone else promoted first keeps its own explanation.
  assert.equal(plain(actionFailureText(rolloutAction('promote-step', r)!, r.id, { status: 409, message: 'moved on' })), 'Step 1 not skipped: [moved on]. The rollout changed since it was shown; the view now shows where it is.');
});
