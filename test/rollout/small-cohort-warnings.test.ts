import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import type { RolloutState } from '../../server/rollout/rollout-state.ts';
import { smallCohortWarnings } from '../../server/rollout/small-cohort-warnings.ts';

const SPEC = `
model: wine
candidateVersion: "2"
target: {matchLabels: {site: north}}
steps:
  - selector: {matchLabels: {pilot: "true"}}
  - analysis: {templates: [{templateName: fleetprune-relative}]}
  - setWeight: 100
  - analysis:
      metrics:
        - name: accuracy-ten
          minSamples: 10
          relative: {metric: accuracy, comparator: ">=", tolerance: 0.5, toleranceMode: absolute}
`;

test('a relative analysis whose cohort holds fewer devices than its minSamples is warned of at the start; one with enough devices is not', () => {
  const spec = parseRolloutSpec(SPEC);
  const devices = ['n1', 'n2', 'n3', 'n4', 'n5'].map((id) => ({ id, labels: { site: 'north', ...(id === 'n1' ? { pilot: 'true' } : {}) } }));
  const state = { spec, devices, cohort: [] } as unknown as RolloutState;
  const warnings = smallCohortWarnings(state);
  const pilotMetrics = spec.steps[1]!.kind === 'analysis' ? spec.steps[1]!.metrics.filter((metric) => metric.source.kind === 'relative') : [];
  assert.ok(pilotMetrics.length > 0, 'the template has relative metrics');
  // The pilot (1 device) is under every relative metric's default minSamples 4; all five devices are under 10.
  assert.deepEqual(warnings, [
    ...pilotMetrics.map(
      (metric) =>
        `steps[1].analysis metric "${metric.name}": the cohort holds 1 device by then, under its minSamples 4 (one sample a device): every measurement will be Inconclusive and the rollout will pause there; grow the cohort in an earlier step, or set minSamples lower`,
    ),
    'steps[3].analysis metric "accuracy-ten": the cohort holds 5 devices by then, under its minSamples 10 (one sample a device): every measurement will be Inconclusive and the rollout will pause there; grow the cohort in an earlier step, or set minSamples lower',
  ]);

  // Four pilots: the first analysis has its samples.
  const four = devices.map((device, index) => ({ ...device, labels: { ...device.labels, ...(index < 4 ? { pilot: 'true' } : {}) } }));
  assert.deepEqual(smallCohortWarnings({ spec, devices: four, cohort: [] } as unknown as RolloutState).map((warning) => warning.slice(0, 8)), ['steps[3]']);
});

test('a step that adds no device (a 50% step after a pilot of half the fleet) is warned of at the start; a 100% step, which activates everywhere, is not', () => {
  const spec = parseRolloutSpec(`
model: wine
candidateVersion: "2"
target: {matchLabels: {}}
steps:
  - selector: {matchLabels: {pilot: "true"}}
  - setWeight: 50
  - analysis: {templates: [{templateName: fleetprune-relative}]}
  - setWeight: 75
  - devices: [d00]
  - pause: {}
  - setWeight: 100
`);
  const devices = Array.from({ length: 12 }, (_, i) => ({ id: `d${String(i).padStart(2, '0')}`, labels: i < 6 ? { pilot: 'true' } : {} }));
  assert.deepEqual(smallCohortWarnings({ spec, devices, cohort: [] } as unknown as RolloutState), [
    'steps[1] (setWeight 50) adds no device: the cohort holds 6 of 12 devices by then, so the step changes nothing, and the analysis after it measures the same devices again; raise it, or drop it',
    'steps[4] (devices: 1) adds no device: the cohort holds 9 of 12 devices by then, so the step changes nothing; raise it, or drop it',
  ]);
  // A pilot of a third: the 50% step adds devices (d00, a pilot, is still in the cohort already).
  const third = devices.map((device, i) => ({ ...device, labels: i < 4 ? { pilot: 'true' } : {} }));
  assert.deepEqual(smallCohortWarnings({ spec, devices: third, cohort: [] } as unknown as RolloutState).map((warning) => warning.slice(0, 8)), ['steps[4]']);
});

// docs/rollout-spec.md said any `setWeight: 100` "activates the candidate everywhere": only the
// last step is followed by the activation, so a repeated 100% step added nothing, unwarned.
test('a 100% step that adds no device is warned of unless it is the last growth step (the conventional final step on a fleet the pilot covers)', () => {
  const spec = parseRolloutSpec(`
model: wine
candidateVersion: "2"
target: {matchLabels: {}}
steps:
  - setWeight: 100
  - pause: {}
  - setWeight: 100
  - analysis: {templates: [{templateName: fleetprune-accuracy}]}
  - setWeight: 100
`);
  const devices = Array.from({ length: 4 }, (_, i) => ({ id: `d${i}`, labels: {} }));
  assert.deepEqual(smallCohortWarnings({ spec, devices, cohort: [] } as unknown as RolloutState), [
    'steps[2] (setWeight 100) adds no device: the cohort holds 4 of 4 devices by then, so the step changes nothing, and the analysis after it measures the same devices again; drop it',
  ]);
});
