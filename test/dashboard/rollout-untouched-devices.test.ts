import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderRolloutDetail, renderRolloutList, type RolloutSummary } from '../../server/dashboard/ui/rollouts-view.ts';
import { detailFixture } from './rollout-detail-fixture.ts';

/**
 * A rollout of 60 devices rolled back after its 50% step: 3 back on their baseline, 27 unreachable
 * and 30 that no step reached. The list said "3/60 delivered, 27 unreachable", leaving 30 devices
 * unaccounted for.
 */
const devices = { total: 60, candidate: 0, delivered: 3, pending: 0, retrying: 0, unreachable: 27, refused: 0, reassigned: 0 };

function summary(overrides: Partial<Record<keyof RolloutSummary, unknown>>): RolloutSummary {
  return {
    id: 'ro-1', model: 'iris', candidateVersion: '2', phase: 'RolledBack', terminal: true, stepIndex: 1, stepCount: 3, currentStep: 'setWeight: 50',
    weight: 0, devices, outcome: { status: 'rolled-back', reason: 'by token:ops', at: '2026-01-01T00:00:00.000Z' }, pause: null, updatedAt: '2026-01-01T00:00:00.000Z',
    ...overrides,
  } as unknown as RolloutSummary;
}

const cellText = (html: string) => html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');

test('a finished rollout counts the devices no step reached ("untouched"), so that its counts add up; a running one does not', () => {
  assert.match(cellText(renderRolloutList([summary({})], undefined)), / 3\/60 delivered, 27 unreachable, 30 untouched /);
  assert.doesNotMatch(cellText(renderRolloutList([summary({ phase: 'Paused', terminal: false, outcome: null })], undefined)), /untouched/);
  assert.match(renderRolloutDetail(detailFixture({ phase: 'RolledBack', terminal: true, devices })), /Devices: total 60, delivered 3, unreachable 27, untouched 30/);
  assert.doesNotMatch(renderRolloutDetail(detailFixture({ devices })), /untouched/);
});
