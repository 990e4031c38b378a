import assert from 'node:assert/strict';
import { test } from 'node:test';
import { axisWidth, chartLabels } from '../../server/dashboard/ui/rollouts-view.ts';

test("a relative check's chart says its lines are context: the verdict is per device, not the candidate median against the bound of the baseline median", () => {
  const relative = { kind: 'measurement', measurement: { metric: 'accuracy', relative: { candidateMedian: 90.5, bound: 91 } } };
  const query = { kind: 'measurement', measurement: { metric: 'errors', value: [0.01], queries: { query: 'vector(0.01)' } } };
  const decisions = [{ kind: 'step' }, relative, query];
  const accuracy = chartLabels('accuracy', decisions);
  assert.equal(accuracy.success, 'bound of the baseline median', 'not "success threshold": the verdict does not compare the candidate median with it');
  assert.match(accuracy.title, /^accuracy \(medians; verdict per device: see the decision log\)$/);
  // With the unit and direction the measurement gives (an MSE chart said neither).
  const mse = { kind: 'measurement', measurement: { metric: 'mse', relative: { unit: 'label units²', comparator: '<=', candidateMedian: 1, bound: 1 } } };
  assert.equal(chartLabels('mse', [mse]).title, 'mse in label units², lower is better (medians; verdict per device: see the decision log)');
  // The y axis is as wide as its widest tick label: "10,000" was drawn "0,000".
  assert.equal(axisWidth(['2,500', '10,000']), 58);
  assert.equal(axisWidth(['2,000,000']), 79);
  assert.equal(axisWidth(null), 50);
  // A query metric compares what the chart shows with its threshold; what it shows is the query's result, no candidate's value.
  assert.deepEqual(chartLabels('errors', decisions), { title: 'errors (query result)', candidate: 'result (median of its values)', baseline: 'baseline (median)', success: 'success threshold', failure: 'failure threshold' });
  assert.equal(chartLabels('accuracy', [{ kind: 'measurement', measurement: { metric: 'accuracy', relative: null } }]).success, 'success threshold', 'no relative evidence, no relative labels');
});
