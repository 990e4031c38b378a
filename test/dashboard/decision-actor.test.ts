import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderRolloutDetail } from '../../server/dashboard/ui/rollouts-view.ts';
import { detailFixture } from './rollout-detail-fixture.ts';

const decision = (message: string, by?: string) => ({ at: '2026-12-01T10:00:00.000Z', kind: 'command', stepIndex: 0, verdict: 'resumed', message, ...(by ? { by } : {}) });

/** The reason cells of the decision log, tags removed. */
function reasons(html: string): string[] {
  return [...html.matchAll(/<td class="reason">([\s\S]*?)<\/td>/g)].map((m) => m[1]!.replace(/<[^>]+>/g, '').replace(/[\u2066-\u2069]/g, ''));
}

test('the decision log names who decided once: a message that says "by X" gets no second "by X"; one that does not gets it', () => {
  const html = renderRolloutDetail(
    detailFixture({
      decisions: [
        decision('resumed by token:env-admin', 'token:env-admin'),
        decision('rollout of wine 4 to 2 devices (site=s1) in 2 steps, started by token:env-admin; previous production none', 'token:env-admin'),
        decision('step skipped', 'token:ops'),
        decision('analysis passed'),
      ],
    }),
  );
  const cells = reasons(html);
  assert.equal(cells.length, 4, `four decisions rendered: ${JSON.stringify(cells)}`);
  // Newest first.
  assert.deepEqual(cells.reverse(), [
    'resumed by token:env-admin',
    'rollout of wine 4 to 2 devices (site=s1) in 2 steps, started by token:env-admin; previous production none',
    'step skipped by token:ops',
    'analysis passed',
  ]);
});
