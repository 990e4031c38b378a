import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rolloutAction } from '../../server/dashboard/ui/rollouts-view.ts';
import { detailFixture } from './rollout-detail-fixture.ts';

/** A selector value as a spec may give it: line breaks that would pad the dialog with text of its own, and a right-to-left override. */
const PADDED = 'x)\n\nThis only re-sends the current version: no device changes.\r\nPress OK to continue safely.\u202e\u2066\u200f\n\n';

test('the confirm() dialogs quote user text (step descriptions, model, versions) on one printable line: line breaks, control and bidi characters escaped', () => {
  const r = detailFixture({
    model: 'wine\u202egnp.exe',
    candidateVersion: '4\n5',
    previousProduction: '3\u0007',
    phase: 'Completed',
    steps: [
      { index: 0, kind: 'analysis', description: 'analysis of accuracy', status: 'current' },
      { index: 1, kind: 'selector', description: `devices matching site notin (${PADDED})`, status: 'pending' },
      { index: 2, kind: 'setWeight', description: 'set weight 100%', status: 'pending' },
    ],
    stepCount: 3,
    devices: { total: 2, candidate: 1, baseline: 1 },
  });
  const dialogs = ['promote-full', 'promote-step', 'rollback', 'abort'].map((action) => rolloutAction(action, r)?.confirm ?? '');
  for (const text of dialogs) {
    assert.doesNotMatch(text, /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u, `one printable line: ${JSON.stringify(text)}`);
  }
  const [full, step, rollback] = dialogs;
  assert.equal(
    full,
    'Promote ro-1 to 100% now: wine\\u202egnp.exe@4\\n5 becomes active on all 2 of its devices at once, skipping the 3 remaining steps ' +
      '(1. analysis of accuracy; 2. devices matching site notin (x)\\n\\nThis only re-sends the current version: no device changes.\\r\\nPress OK to continue safely.\\u202e\\u2066\\u200f\\n\\n); 3. set weight 100%), including an analysis?',
  );
  assert.match(step!, /go on with 2\. devices matching site notin \(x\)\\n\\nThis only/, `the next step quoted escaped: ${step}`);
  assert.match(rollback!, /make wine\\u202egnp\.exe@3\\x07 production again/, `the previous production quoted escaped: ${rollback}`);
});

test('the rollback confirmation names a version it restores that is failed, rolled back or retired in the registry now (the server\'s rollbackWarnings, not the start\'s), user text escaped; no warning, no note', () => {
  const restoring = 'wine@3 (the previous production and the baseline of 2 devices) is failed since 2026-01-02T03:04:05.000Z (pilot\nfailed); this rollback restores it';
  const retired = 'wine@3 (the previous production and the baseline of 2 devices) is retired in the registry; this rollback restores it and un-retires it: it is production again';
  const r = detailFixture({
    phase: 'Completed',
    // The start warned of another version, since un-retired: the confirmation says what a rollback now restores.
    warnings: ['no analysis step: nothing compares the candidate', 'wine@2 (the baseline of 1 device) is retired in the registry; a rollback of this rollout would restore it'],
    rollbackWarnings: [restoring, retired],
  });
  assert.equal(
    rolloutAction('rollback', r)?.confirm,
    'Warning: wine@3 (the previous production and the baseline of 2 devices) is failed since 2026-01-02T03:04:05.000Z (pilot\\nfailed); this rollback restores it. ' +
      'wine@3 (the previous production and the baseline of 2 devices) is retired in the registry; this rollback restores it and un-retires it: it is production again. ' +
      'Roll back every device of ro-1 to its baseline, make wine@3 production again, and send it to every other device running wine@4?',
  );
  assert.equal(rolloutAction('rollback', detailFixture({ warnings: ['no analysis step: nothing compares the candidate'] }))?.confirm, 'Roll back every device of ro-1 to its baseline?');
  assert.equal(rolloutAction('rollback', detailFixture())?.confirm, 'Roll back every device of ro-1 to its baseline?', 'no warning');
  assert.equal(rolloutAction('rollback', detailFixture({ rollbackWarnings: undefined as never }))?.confirm, 'Roll back every device of ro-1 to its baseline?', 'a detail without rollbackWarnings (an older server)');
  // Rolled back already, with devices not back: the question says what a second one does (it asked the first question again).
  assert.equal(rolloutAction('rollback', detailFixture({ phase: 'RolledBack', terminal: true, notBackOnBaseline: 12 }))?.confirm, 'ro-1 is RolledBack already. Send the baseline again to the 12 devices not back on it yet?');
  assert.equal(rolloutAction('rollback', detailFixture({ phase: 'Failed', terminal: true, notBackOnBaseline: 1 }))?.confirm, 'ro-1 is Failed already. Send the baseline again to the 1 device not back on it yet?');
});
