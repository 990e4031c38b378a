import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePromql } from '../../server/metricproviders/builtin/promql-parser.ts';
import { parseRolloutSpec } from '../../server/rollout/rollout-spec.ts';

// docs/rollout-spec.md, "The builtin provider's PromQL": what it does not support is "a clear
// error naming it" (`topk` and the other functions), a 400 naming the field when a spec is validated.

test('a function the builtin provider lacks is named, even when its arguments hold strings', () => {
  for (const [query, name] of [
    ['label_replace(up, "dst", "$1", "src", "(.*)")', 'label_replace'],
    ['label_join(up, "dst", ",", "a", "b")', 'label_join'],
    ['round(up)', 'round'],
  ] as const) {
    assert.throws(() => parsePromql(query), { message: new RegExp(`^the builtin provider does not support the function "${name}"`) }, query);
  }
});

test('a string literal where the builtin provider needs a number or a vector says so', () => {
  assert.throws(() => parsePromql('"up"'), { message: /^the builtin provider does not support string literals \("up"\)/ });
  assert.throws(() => parsePromql('up == "1"'), { message: /^the builtin provider does not support string literals \("1"\)/ });
});

test('a spec whose builtin query calls label_replace is refused naming the field and the function', () => {
  const spec = [
    'model: m',
    'candidateVersion: "2"',
    'steps:',
    '  - analysis:',
    '      metrics:',
    '        - name: a',
    '          successCondition: "result[0] > 0"',
    '          provider: {builtin: {query: \'label_replace(up, "dst", "$1", "src", "(.*)")\'}}',
  ].join('\n');
  assert.throws(() => parseRolloutSpec(spec), { message: /steps\[0\]\.analysis\.metrics\[0\]\.provider\.builtin\.query: the builtin provider does not support the function "label_replace"/ });
});

test('the functions it has still parse, and still check their arguments', () => {
  parsePromql('histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))');
  parsePromql('abs(scalar(sum(up)))');
  assert.throws(() => parsePromql('rate(up)'), { message: /^rate\(\) takes one range selector/ });
  assert.throws(() => parsePromql('abs(up, up)'), { message: /^abs\(\) takes 1 argument, got 2/ });
});
