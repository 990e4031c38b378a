import type { RolloutDetail } from '../../server/dashboard/ui/rollouts-view.ts';

/** A rollout detail with just what renderRolloutDetail reads. */
export function detailFixture(overrides: Partial<Record<keyof RolloutDetail, unknown>> = {}): RolloutDetail {
  return {
    id: 'ro-1',
    model: 'wine',
    candidateVersion: '4',
    phase: 'Progressing',
    stepIndex: 0,
    stepCount: 2,
    steps: [
      { index: 0, kind: 'setWeight', description: 'setWeight 50', status: 'current' },
      { index: 1, kind: 'setWeight', description: 'setWeight 100', status: 'pending' },
    ],
    devices: { candidate: 1, baseline: 1 },
    decisions: [],
    pause: null,
    outcome: null,
    previousProduction: '3',
    terminal: false,
    stepStage: 'step',
    notBackOnBaseline: 0,
    rollbackRefused: null,
    rollbackWarnings: [],
    ...overrides,
  } as unknown as RolloutDetail;
}
