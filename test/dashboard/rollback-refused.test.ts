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
  const off = renderRolloutDetail(detailFixture({ ...failed, rollbackRefused: refused }));
  assert.deepEqual(rollbackButton(off), { disabled: true, title: refused });
  // Said on the page too: a disabled button's tooltip is out of a keyboard's and a screen reader's reach.
  assert.equal(/<p class="muted" id="rollback-refused">(.*?)<\/p>/.exec(off)?.[1]?.replace(/<\/?bdi>/g, ""), `Roll back is off: ${refused}`);
  assert.doesNotMatch(renderRolloutDetail(detailFixture({ ...failed, rollbackRefused: null })), /rollback-refused/);
  const promoted = { phase: 'Completed', terminal: true, outcome: { status: 'completed', reason: 'promoted', at: '2026-12-01T10:00:00.000Z' } };
  assert.equal(rollbackButton(renderRolloutDetail(detailFixture({ ...promoted, rollbackRefused: null }))).disabled, false, 'a promoted rollout, the newest: it may be rolled back');
  assert.equal(rollbackButton(renderRolloutDetail(detailFixture({ ...promoted, rollbackRefused: refused }))).disabled, true, 'a promoted rollout a newer one came after');
});

/**
 * The detail showed only counts ("unreachable 1") and asked for no device states: which device was
 * unreachable, and why, was nowhere in the dashboard. It names the devices that need a look.
 */
test('the rollout detail names the devices not there yet (refused, unreachable, retrying, pending) with why, and says when there are more', () => {
  const deviceStates = [
    { id: 'press-<7>', desired: 'baseline', delivery: 'unreachable', attempts: 5, baseline: '3', reason: 'offline', outside: false },
    { id: 'press-2', desired: 'baseline', delivery: 'retrying', attempts: 2, baseline: '3', reason: 'it has yet to activate wine@3', outside: false },
    { id: 'press-1', desired: 'baseline', delivery: 'delivered', attempts: 1, baseline: '3', reason: null, outside: false },
  ];
  const devices = { total: 40, candidate: 0, delivered: 1, pending: 0, retrying: 30, unreachable: 9, refused: 0 };
  const html = renderRolloutDetail(detailFixture({ deviceStates, devices }));
  const rows = [...html.matchAll(/<td class="device-id">([\s\S]*?)<\/td><td><span class="badge[^"]*">([^<]*)<\/span><\/td><td>([^<]*)<\/td><td class="reason">([\s\S]*?)<\/td>/g)].map((m) =>
    [m[1], m[2], m[3], m[4]].map((cell) => cell!.replace(/<[^>]+>/g, '').replace(/[\u2066-\u2069]/g, '')).join(' | '),
  );
  assert.deepEqual(rows, ['press-&#60;7&#62; | unreachable | baseline | offline', 'press-2 | retrying | baseline | it has yet to activate wine@3']);
  assert.match(html, /The first 2 of 39;/);
  assert.doesNotMatch(renderRolloutDetail(detailFixture({ deviceStates: [deviceStates[2]], devices: { ...devices, retrying: 0, unreachable: 0 } })), /Devices not there yet/, 'nothing to show when every device listed is delivered');
  // Devices the rollout has sent nothing (not in its cohort yet, or on their baseline already) are where they should be.
  const idle = [{ id: 'press-9', desired: 'baseline', delivery: 'idle', attempts: 0, baseline: '3', reason: null, outside: false }];
  assert.doesNotMatch(renderRolloutDetail(detailFixture({ deviceStates: idle, devices: { ...devices, retrying: 0, unreachable: 0 } })), /Devices not there yet/, 'idle devices are not listed');
});

test('each step says its state in words beside it (not in colour alone), and the phase is a polite live region', () => {
  const html = renderRolloutDetail(
    detailFixture({
      phase: 'Failed',
      terminal: true,
      steps: [
        { index: 0, kind: 'setWeight', description: 'setWeight 50', status: 'done' },
        { index: 1, kind: 'analysis', description: 'analysis', status: 'stopped' },
        { index: 2, kind: 'setWeight', description: 'setWeight 100', status: 'pending' },
      ],
    }),
  );
  const steps = [...html.matchAll(/<span class="step[^"]*"[^>]*>(.*?)<\/span>(?=<span class="step|<\/div>)/g)].map((m) => m[1]!.replace(/<[^>]+>/g, ''));
  assert.deepEqual(steps, ['1. setWeight 50 (done)', '2. analysis (stopped here)', '3. setWeight 100']);
  assert.match(html, /<span class="badge phase-Failed" id="rollout-phase" role="status">Failed<\/span>/);
});
