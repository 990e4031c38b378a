import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeMetrics } from '../../server/cli/models-command.ts';

test('models show reads the scores as the prune report gives them: accuracy in percent, an MSE to five digits and r² to three decimals (as prune prints them); anything else as it came', () => {
  assert.equal(describeMetrics('{"test":{"accuracy":0.9666666},"validation":{"accuracy":1}}'), 'test accuracy 96.67% · validation accuracy 100.00%');
  assert.equal(describeMetrics('{"test":{"mse":2890.123456,"r2":0.51234567}}'), 'test mse 2890.1, r² 0.512');
  assert.equal(describeMetrics('{"test":{"mse":0.000123456789,"r2":-0.0002}}'), 'test mse 0.00012346, r² 0.000');
  assert.equal(describeMetrics('{}'), '-');
  for (const odd of ['not json', '[1]', '{"test":3}', 'null']) assert.equal(describeMetrics(odd), odd);
});
