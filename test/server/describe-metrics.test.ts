import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeMetrics } from '../../server/cli/models-command.ts';

test('models show reads the scores as the prune report gives them: accuracy in percent, regression scores to five digits; anything else as it came', () => {
  assert.equal(describeMetrics('{"test":{"accuracy":0.9666666},"validation":{"accuracy":1}}'), 'test accuracy 96.67% · validation accuracy 100.00%');
  assert.equal(describeMetrics('{"test":{"mse":2890.123456,"r2":0.51234567}}'), 'test mse 2890.1, r² 0.51235');
  assert.equal(describeMetrics('{}'), '-');
  for (const odd of ['not json', '[1]', '{"test":3}', 'null']) assert.equal(describeMetrics(odd), odd);
});
