import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderRolloutList, type RolloutSummary } from '../../server/dashboard/ui/rollouts-view.ts';

/** The step cell of the list's one row, tags and bidi isolates removed. */
function stepCell(summary: Partial<Record<keyof RolloutSummary, unknown>>): string {
  const row = {
    id: 'ro-1',
    model: 'wine',
    candidateVersion: '4',
    phase: 'Progressing',
    terminal: false,
    stepIndex: 4,
    stepCount: 7,
    currentStep: 'pause until resumed',
    devices: { total: 3, candidate: 1, delivered: 1, pending: 0, retrying: 0, unreachable: 0, refused: 0, reassigned: 0 },
    outcome: null,
    pause: null,
    updatedAt: '2026-12-01T10:00:00.000Z',
    ...summary,
  } as unknown as RolloutSummary;
  const cells = [...renderRolloutList([row], undefined).matchAll(/<td>([\s\S]*?)<\/td>/g)].map((m) => m[1]!.replace(/<[^>]+>/g, '').replace(/[\u2066-\u2069]/g, ''));
  return cells.find((cell) => /^\d+\/\d+/.test(cell))!;
}

test('the rollout list says where a running rollout is, and where a finished one ended: not a live "pause until resumed" on a rolled-back rollout', () => {
  assert.equal(stepCell({ phase: 'Paused' }), '5/7 pause until resumed');
  assert.equal(stepCell({ phase: 'RolledBack', terminal: true }), '5/7 stopped at: pause until resumed');
  assert.equal(stepCell({ phase: 'Failed', terminal: true, currentStep: 'analysis of accuracy' }), '5/7 stopped at: analysis of accuracy');
  assert.equal(stepCell({ phase: 'Completed', terminal: true, stepIndex: 7, currentStep: null }), '7/7');
});
