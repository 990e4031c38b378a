import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BuiltinProvider } from '../../server/metricproviders/builtin/builtin-provider.ts';
import { parsePromql, type PromExpr } from '../../server/metricproviders/builtin/promql-parser.ts';
import { InMemoryReportHistory } from '../../server/metricproviders/in-memory-report-history.ts';
import { parseRolloutSpec } from '../../server/rollout/rollout-spec.ts';

// Prometheus's lexer takes Go's escapes in quoted strings and refuses any other one ("unknown
// escape sequence"); the builtin provider reads label values the same way.

/** The value of the `a` matcher of `up{a=<literal>}`. */
function labelValue(literal: string): string {
  const expr = parsePromql(`up{a=${literal}}`) as Extract<PromExpr, { matchers: unknown }>;
  const matcher = expr.matchers.find((m) => m.label === 'a');
  assert.ok(matcher, `no matcher "a" in ${JSON.stringify(expr)}`);
  return matcher.value;
}

describe('builtin PromQL: escapes in quoted strings', () => {
  it("decodes Go's escapes as Prometheus does", () => {
    for (const [literal, value] of [
      ['"\\a\\b\\f\\n\\r\\t\\v\\\\"', '\x07\b\f\n\r\t\v\\'],
      ['"say \\"hi\\""', 'say "hi"'],
      ["'it\\'s'", "it's"],
      ['"\\101\\x42\\u00e9\\U0001F600"', 'ABé😀'],
      ['"\\xc3\\xa9"', 'é'], // \x gives bytes: two of them make one UTF-8 character
      ['"edge-\\\\d"', 'edge-\\d'],
      ['`edge-\\d`', 'edge-\\d'], // raw strings have no escapes
      ['"é plain"', 'é plain'],
    ] as const) {
      assert.equal(labelValue(literal), value, literal);
    }
  });

  it('refuses an unknown escape naming it, instead of dropping the backslash', () => {
    for (const [literal, named] of [
      ['"edge-\\d"', "\\d (U+0064 'd')"],
      ['"site\\.a"', "\\. (U+002E '.')"],
      ['"\\\'"', "\\' (U+0027 ''')"], // only the string's own quote may be escaped
      ["'\\\"'", '\\" (U+0022 \'"\')'],
    ] as const) {
      assert.throws(() => labelValue(literal), (error: Error) => error.name === 'PromqlError' && error.message.startsWith(`unknown escape sequence ${named}`), literal);
    }
    for (const [literal, message] of [
      ['"\\400"', /^escape sequence is an invalid Unicode code point/],
      ['"\\ud800"', /^escape sequence is an invalid Unicode code point/],
      ['"\\x4g"', /^illegal character U\+0067 'g' in escape sequence/],
      ['"\\12"', /^illegal character U\+0022 '"' in escape sequence/],
    ] as const) {
      assert.throws(() => labelValue(literal), { name: 'PromqlError', message }, literal);
    }
  });

  it('a query with "edge-\\d" is an Error measurement, never a match of device edge-d', async () => {
    const history = new InMemoryReportHistory();
    const now = new Date(Date.UTC(2026, 0, 1));
    for (const device of ['edge-1', 'edge-d']) {
      history.add({ model: 'm', version: '1', role: 'active', cohort: 'c', deviceId: device, accuracy: 0.9, latencyMs: { p50: 1, p95: 2, p99: 3 }, errors: 0, predictions: 10, ts: new Date(now.getTime() - 1000) });
    }
    const provider = new BuiltinProvider({ history });
    await assert.rejects(provider.query('fleetprune_device_accuracy_ratio{device=~"edge-\\d"}', { now }), { message: /^builtin: bad query: unknown escape sequence \\d \(U\+0064 'd'\)/ });
    const escaped = await provider.query('fleetprune_device_accuracy_ratio{device=~"edge-\\\\d"}', { now });
    assert.deepEqual(escaped.samples.map((s) => s.labels.device), ['edge-1']);
  });

  it('a spec whose builtin query has an unknown escape is refused when validated, naming the field', () => {
    const spec = [
      'model: m',
      'candidateVersion: "2"',
      'steps:',
      '  - analysis:',
      '      metrics:',
      '        - name: a',
      '          successCondition: "result[0] > 0"',
      '          provider: {builtin: {query: \'fleetprune_device_accuracy_ratio{device=~"edge-\\d"}\'}}',
    ].join('\n');
    assert.throws(() => parseRolloutSpec(spec), { message: /steps\[0\]\.analysis\.metrics\[0\]\.provider\.builtin\.query: unknown escape sequence \\d/ });
  });
});
