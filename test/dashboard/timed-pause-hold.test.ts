import assert from 'node:assert/strict';
import { test } from 'node:test';
import { actionFailureText, renderRolloutDetail, rolloutAction } from '../../server/dashboard/ui/rollouts-view.ts';
import { detailFixture } from './rollout-detail-fixture.ts';

const actions = (html: string) => [...html.matchAll(/<button data-action="([^"]+)"[^>]*>([^<]*)<\/button>/g)].map((m) => `${m[1]}:${m[2]}`);

/**
 * In a timed pause step the dashboard offered only Resume (which ends the pause): an operator
 * could not hold the rollout there, and it moved on by itself when the time was up. It offers
 * Hold next to Resume (the server's pause); an operator's own pause or an untimed one offers none.
 */
test('the dashboard offers "Hold" (a pause) only in a timed pause step', () => {
  const timed = renderRolloutDetail(detailFixture({ phase: 'Paused', pause: { reason: 'step', since: '2026-12-01T10:00:00.000Z', until: '2026-12-01T10:10:00.000Z', message: 'step 2 pauses for 10m' } }));
  assert.deepEqual(actions(timed).filter((a) => /^(pause|resume)/.test(a)), ['resume:Resume', 'pause:Hold'], `timed pause: ${JSON.stringify(actions(timed))}`);
  assert.deepEqual(rolloutAction('pause', detailFixture()), { path: 'pause', name: 'Pause', pending: 'Pausing' }, 'Hold posts the pause command');

  const untimed = renderRolloutDetail(detailFixture({ phase: 'Paused', pause: { reason: 'step', since: '2026-12-01T10:00:00.000Z', until: null, message: 'step 2 pauses until resumed' } }));
  const held = renderRolloutDetail(detailFixture({ phase: 'Paused', pause: { reason: 'manual', since: '2026-12-01T10:00:00.000Z', until: null, message: 'paused by token:ops' } }));
  const running = renderRolloutDetail(detailFixture());
  assert.deepEqual(actions(untimed).filter((a) => /^(pause|resume)/.test(a)), ['resume:Resume'], 'an untimed pause step waits for a human already');
  assert.deepEqual(actions(held).filter((a) => /^(pause|resume)/.test(a)), ['resume:Resume'], 'held by an operator');
  assert.deepEqual(actions(running).filter((a) => /^(pause|resume)/.test(a)), ['pause:Pause'], 'progressing');
});

test('Resume names the pause shown, so a resume someone else made first refuses it (409) with a message saying the rollout changed, not a second resume', () => {
  const held = detailFixture({ phase: 'Paused', pause: { reason: 'manual', since: '2026-12-01T10:03:00.123Z', until: null, message: 'paused by token:ops' } });
  const action = rolloutAction('resume', held)!;
  assert.deepEqual(action, { path: 'resume?pausedSince=2026-12-01T10%3A03%3A00.123Z', name: 'Resume', pending: 'Resuming', pausedSince: '2026-12-01T10:03:00.123Z' });
  const refused = actionFailureText(action, 'ro-1', { status: 409, message: 'rollout ro-1 is no longer in the pause of 2026-12-01T10:03:00.123Z (…); not resumed again' });
  assert.deepEqual(refused, [
    'Not resumed: ',
    { user: 'rollout ro-1 is no longer in the pause of 2026-12-01T10:03:00.123Z (…); not resumed again' },
    '. The rollout changed since it was shown (resumed by someone else, perhaps); the view now shows where it is.',
  ]);
  // Not paused as shown (nothing to name): a plain resume, which the server refuses if it is not paused.
  assert.deepEqual(rolloutAction('resume', detailFixture()), { path: 'resume', name: 'Resume', pending: 'Resuming' });
});
