import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_ANALYSIS_TEMPLATES } from '../../server/analysis/default-templates.ts';
import { readFileSync } from 'node:fs';
import { parseRolloutSpec, RolloutSpecError, validateRolloutSpec } from '../../server/rollout/rollout-spec.ts';
import { UserError } from '../../shared/util/errors.ts';

const base = () => ({
  model: 'wine',
  candidateVersion: '2',
  steps: [{ setWeight: 5 }, { analysis: { templates: [{ templateName: 'fleetprune-accuracy' }] } }, { setWeight: 100 }] as unknown[],
});

function issues(document: unknown): string[] {
  try {
    validateRolloutSpec(document);
  } catch (error) {
    assert.ok(error instanceof RolloutSpecError, `expected RolloutSpecError, got ${String(error)}`);
    assert.ok(error instanceof UserError);
    return error.issues.map((issue) => `${issue.path}: ${issue.message}`);
  }
  assert.fail('the spec was accepted');
}

const withStep = (step: unknown, extra: Record<string, unknown> = {}) => ({ ...base(), steps: [step], ...extra });
const queryMetric = (fields: Record<string, unknown>) => ({
  name: 'm',
  provider: { prometheus: { query: 'up' } },
  successCondition: 'result[0] == 1',
  ...fields,
});

describe('rollout spec: valid specs', () => {
  it('the example and the built-in templates read per-device series of the rollout\'s cohort and fleet only (a device outside it can claim any candidate in its heartbeats; another fleet may reuse its names)', () => {
    const example = parseYaml(readFileSync(new URL('../../deploy/examples/rollout.yaml', import.meta.url), 'utf8')) as { analysisTemplates: { metrics: MetricText[] }[] };
    type MetricText = { provider?: Record<string, { query?: string; baselineQuery?: string; samplesQuery?: string }> };
    const queries = [...example.analysisTemplates, ...(DEFAULT_ANALYSIS_TEMPLATES as unknown as { metrics: MetricText[] }[])]
      .flatMap((template) => template.metrics)
      .flatMap((metric) => Object.values(metric.provider ?? {}).flatMap((query) => [query.query, query.baselineQuery, query.samplesQuery]))
      .filter((query): query is string => query !== undefined);
    assert.ok(queries.length >= 3, `found ${queries.length} queries`);
    let series = 0;
    for (const query of queries) {
      // Every per-device series, with or without a selector: a bare `fleetprune_device_x` reads the whole fleet.
      for (const [name, selector] of query.matchAll(/fleetprune_device_\w+(\{(?:[^"}]|"[^"]*")*\})?/g)) {
        series += 1;
        assert.match(selector ?? '', /device=~"\{\{args\.cohort\}\}"/, `${name} in ${query} does not select the cohort's devices`);
        // Fleets sharing a Prometheus may reuse model names and device ids.
        assert.match(selector ?? '', /fleet="\{\{args\.fleet\}\}"/, `${name} in ${query} does not keep to the rollout's fleet`);
      }
    }
    assert.ok(series >= 3, `found ${series} per-device series in ${queries.length} queries`);
  });

  it('parses the documented example with defaults applied and templates expanded', () => {
    const spec = parseRolloutSpec(readFileSync(new URL('../../deploy/examples/rollout.yaml', import.meta.url), 'utf8'), 'rollout.yaml');
    assert.equal(spec.model, 'wine');
    assert.equal(spec.candidateVersion, '2');
    assert.deepEqual(spec.steps.map((step) => step.kind), ['selector', 'analysis', 'setWeight', 'analysis', 'setWeight', 'pause', 'analysis', 'pause', 'setWeight']);
    const pilot = spec.steps[1]!;
    assert.equal(pilot.kind, 'analysis');
    if (pilot.kind !== 'analysis') return;
    assert.deepEqual(pilot.metrics.map((metric) => metric.name), ['accuracy', 'latency-p95', 'error-rate']);
    const accuracy = pilot.metrics[0]!;
    assert.deepEqual(accuracy.source, { kind: 'relative', metric: 'accuracy', comparator: '>=', tolerance: 0.5, toleranceMode: 'absolute', confidence: 0.95, windowMs: 60_000 });
    assert.equal(accuracy.minSamples, 4);
    assert.equal(accuracy.count, 3);
    const second = spec.steps[3]!;
    if (second.kind !== 'analysis') return assert.fail('step 3 is an analysis');
    const errorRatio = second.metrics.find((metric) => metric.name === 'error-ratio')!;
    assert.deepEqual(errorRatio.args, { maxErrorRatio: '0.005' }, 'the step argument overrides the template default');
    assert.equal(errorRatio.failureLimit, 1);
    assert.equal(errorRatio.intervalMs, 60_000);
    assert.equal(errorRatio.successCondition?.source, 'result[0] <= maxErrorRatio');
    assert.deepEqual(spec.steps[5], { kind: 'pause', durationMs: 30 * 60_000 });
    assert.deepEqual(spec.steps[7], { kind: 'pause' });
    assert.deepEqual(spec.offline, { initialBackoffMs: 5000, maxBackoffMs: 60_000, maxAttempts: 5 });
    assert.deepEqual(spec.target.matchExpressions?.[0], { key: 'tier', operator: 'In', values: ['edge', 'gateway'] });
  });

  it('accepts JSON and applies Argo-like defaults to an inline metric', () => {
    const spec = parseRolloutSpec(JSON.stringify(withStep({ analysis: { metrics: [queryMetric({})] } })));
    const step = spec.steps[0]!;
    if (step.kind !== 'analysis') return assert.fail('not an analysis');
    const metric = step.metrics[0]!;
    assert.equal(metric.count, 1);
    assert.equal(metric.failureLimit, 0);
    assert.equal(metric.inconclusiveLimit, 0);
    assert.equal(metric.consecutiveErrorLimit, 4);
    assert.equal(metric.consecutiveSuccessLimit, 0);
    assert.equal(metric.minSamples, 1);
    assert.deepEqual(metric.source, { kind: 'query', provider: 'prometheus', query: 'up', timeoutMs: 10_000 });
    assert.deepEqual(spec.target, {});
    assert.deepEqual(spec.offline, { initialBackoffMs: 5000, maxBackoffMs: 60_000, maxAttempts: 5 });
  });

  it('accepts explicit device lists, selectors, both pause kinds and baselineQuery conditions', () => {
    const spec = validateRolloutSpec({
      ...base(),
      steps: [
        { devices: ['dev-1', 'dev-2'] },
        { selector: { matchExpressions: [{ key: 'pilot', operator: 'Exists' }] } },
        { pause: { duration: '1h30m' } },
        { pause: {} },
        { analysis: { metrics: [queryMetric({ provider: { builtin: { query: 'x', baselineQuery: 'y' } }, successCondition: 'result <= baseline * 1.1' })] } },
      ],
    });
    assert.deepEqual(spec.steps[0], { kind: 'devices', deviceIds: ['dev-1', 'dev-2'] });
    assert.deepEqual(spec.steps[2], { kind: 'pause', durationMs: 5_400_000 });
  });
});

describe('rollout spec: invalid specs name the field', () => {
  it('rejects text that is not YAML', () => {
    assert.throws(() => parseRolloutSpec('model: [unclosed', 'spec.yaml'), /^UserError: spec\.yaml: not valid YAML or JSON \(line 1, column \d+\)/);
    // yaml's own message, without the position said again nor the colon its code frame followed.
    assert.throws(() => parseRolloutSpec('a: 1\n| --- |\nb', 'spec.yaml'), (error: Error) => {
      assert.match(error.message, /^spec\.yaml: not valid YAML or JSON \(line \d+, column \d+\): [A-Z][^:\n]*[^:\s]$/);
      assert.doesNotMatch(error.message, /\): .* at line \d/);
      return true;
    });
    assert.throws(() => parseRolloutSpec('- a\n- b'), /\(spec\): must be a mapping with model, candidateVersion and steps/);
  });

  // Zod's "Invalid input: expected string, received number" said nothing of YAML's reading of an unquoted 2.
  it('asks for quotes around a version or a label value YAML read as a number or a boolean', () => {
    assert.throws(
      () => parseRolloutSpec('model: wine\ncandidateVersion: 2\ntarget:\n  matchLabels: {pilot: true}\nsteps: [{setWeight: 100}]\n', 'spec.yaml'),
      /candidateVersion: must be a string, not a number \(in YAML, put it in quotes: "2", "true"\); target\.matchLabels\.pilot: must be a string, not a boolean \(in YAML, put it in quotes: "2", "true"\)$/,
    );
    // JSON has no unquoted strings: no YAML hint there.
    assert.throws(() => parseRolloutSpec('{"model": "wine", "candidateVersion": 2, "steps": [{"setWeight": 100}]}', 'spec.json'), /candidateVersion: must be a string, not a number$/);
    assert.throws(() => parseRolloutSpec('\uFEFF{"model": "wine", "candidateVersion": 2, "steps": [{"setWeight": 100}]}', 'spec.json'), /candidateVersion: must be a string, not a number$/);
  });

  // MODEL@VERSION, as the CLI writes it, was looked up as version "wine@2" of wine: "no version wine@wine@2 in the registry (push it first)".
  it('says the candidate version is the version alone when it names the model too', () => {
    assert.throws(() => parseRolloutSpec('model: wine\ncandidateVersion: "wine@2"\nsteps: [{setWeight: 100}]\n', 'spec.yaml'), /: candidateVersion: must be a version alone, such as "2": the model is the spec's `model`, not part of the version$/);
    assert.throws(() => parseRolloutSpec('model: wine\ncandidateVersion: "iris@production"\nsteps: [{setWeight: 100}]\n'), /candidateVersion: must be a version alone, such as "production": the model/);
    assert.equal(parseRolloutSpec('model: wine\ncandidateVersion: "2.1-rc+b"\nsteps: [{setWeight: 100}]\n').candidateVersion, '2.1-rc+b');
  });

  it('says a number where a duration belongs has no unit, a number where a condition belongs is none, and a quoted count should not be quoted', () => {
    const spec = `model: wine
candidateVersion: "2"
steps:
  - setWeight: "50"
  - analysis:
      metrics:
        - name: m
          interval: 60
          count: "3"
          successCondition: 5
          provider: {builtin: {query: up}}
`;
    // Text that is no number gets no such hint: unquoting "fifty" would not help.
    assert.throws(() => parseRolloutSpec('model: wine\ncandidateVersion: "2"\nsteps:\n  - setWeight: fifty\n', 'spec.yaml'), /steps\[0\]\.setWeight: must be a number, not a string$/);
    assert.throws(() => parseRolloutSpec(spec, 'spec.yaml'), (error: Error) => {
      assert.deepEqual(error.message.replace(/^spec\.yaml: invalid rollout spec: /, '').split('; '), [
        'steps[0].setWeight: must be a number, not a string (in YAML, without quotes: 50, not "50")',
        'steps[1].analysis.metrics[0].interval: must be a duration such as 500ms, 30s, 5m or 1h30m, with its unit (60 has none: "60s"?)',
        'steps[1].analysis.metrics[0].count: must be a number, not a string (in YAML, without quotes: 3, not "3")',
        'steps[1].analysis.metrics[0].successCondition: must be a condition over the result, such as "result[0] >= 0.9", not 5 alone',
      ]);
      return true;
    });
  });

  it('refuses deep nesting quickly, before the YAML parser recurses into it', () => {
    const valid = 'model: wine\ncandidateVersion: "2"\nsteps: [{setWeight: 100}]\n';
    const flow = (depth: number) => `{"model": "wine", "candidateVersion": "2", "steps": [{"setWeight": 100}], "x": ${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
    const block = (depth: number) => `${valid}x:\n${Array.from({ length: depth }, (_, i) => `${' '.repeat(i + 1)}a:`).join('\n')} 1\n`;
    for (const [name, text] of [
      ['JSON objects', flow(100_000)],
      ['JSON arrays', `${'['.repeat(100_000)}${']'.repeat(100_000)}`],
      ['block mappings', block(1400)],
      ['block sequences', `${'- '.repeat(50_000)}x\n`],
    ]) {
      const started = Date.now();
      assert.throws(() => parseRolloutSpec(text!, 'body'), /^UserError: body: the spec is nested deeper than 64 levels$/, name);
      assert.ok(Date.now() - started < 2000, `${name}: refused in ${Date.now() - started} ms`);
    }
    // 64 levels are fine (the extra field is refused by validation, not by the depth check).
    assert.throws(() => parseRolloutSpec(flow(62)), /: x: unknown field/);
    // Aliases cannot build the depth back up after parsing.
    const aliased = `${valid}a: &a ${'['.repeat(40)}1${']'.repeat(40)}\nb: ${'['.repeat(40)}*a${']'.repeat(40)}\n`;
    assert.throws(() => parseRolloutSpec(aliased, 'body'), /^UserError: body: invalid rollout spec: \(spec\): nested deeper than 64 levels$/);
  });

  it('refuses bad aliases, oversized specs and __proto__ keys as input errors', () => {
    assert.throws(() => parseRolloutSpec('model: *nope', 'body'), /^UserError: body: not valid YAML or JSON: Unresolved alias .*nope$/);
    const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefg'.split('').map((name, i) => `${name}: &${name} [${Array(10).fill(`*${'abcdefg'[i]}`).join(', ')}]`)].join('\n');
    assert.throws(() => parseRolloutSpec(laughs, 'body'), /^UserError: body: not valid YAML or JSON: Excessive alias count/);
    assert.throws(() => parseRolloutSpec(`model: ${'w'.repeat(2 * 1024 * 1024)}`, 'body'), /^UserError: body: the spec is 2097159 bytes; at most 1048576 are accepted$/);
    assert.throws(
      () => parseRolloutSpec('{"model": "wine", "candidateVersion": "2", "steps": [{"selector": {"matchLabels": {"__proto__": "x"}}}]}', 'body'),
      /^UserError: body: invalid rollout spec: steps\[0\]\.selector\.matchLabels\.__proto__: "__proto__" is not allowed as a key$/,
    );
  });

  it('rejects missing and unknown top-level fields', () => {
    assert.deepEqual(issues({ steps: [{ setWeight: 5 }] }), [
      'model: required (string)',
      'candidateVersion: required (string)',
    ]);
    assert.deepEqual(issues({ ...base(), candidate: '3' }), ['candidate: unknown field']);
    const modelRule = 'model: must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with a dot';
    assert.deepEqual(issues({ ...base(), model: 'wine/v2' }), [modelRule]);
    // The registry's own rule: a name it could never hold is refused here, not as "no such model" later.
    assert.deepEqual(issues({ ...base(), model: '.wine' }), [modelRule]);
    assert.deepEqual(issues({ ...base(), steps: [] }), ['steps: must list at least one step']);
    assert.deepEqual(issues({ ...base(), apiVersion: 'v2' }), ['apiVersion: Invalid input: expected "fleetprune/v1"']);
  });

  it('rejects malformed steps', () => {
    assert.deepEqual(issues(withStep({})), ['steps[0]: a step has exactly one of setWeight, devices, selector, pause, analysis; found none']);
    assert.deepEqual(issues(withStep({ setWeight: 5, pause: {} })), ['steps[0]: a step has exactly one of setWeight, devices, selector, pause, analysis; found setWeight, pause']);
    assert.deepEqual(issues(withStep({ setWeight: 0 })), ['steps[0].setWeight: must be > 0']);
    assert.deepEqual(issues(withStep({ setWeight: 150 })), ['steps[0].setWeight: must be ≤ 100']);
    assert.deepEqual(issues({ ...base(), steps: [{ setWeight: 50 }, { setWeight: 25 }] }), ['steps[1].setWeight: must not be below the previous weight (50)']);
    assert.deepEqual(issues(withStep({ pause: { duration: '5 minutes' } })), ['steps[0].pause.duration: must be a duration such as 500ms, 30s, 5m or 1h30m']);
    assert.deepEqual(issues(withStep({ devices: [] })), ['steps[0].devices: must list at least one device']);
    assert.deepEqual(issues(withStep({ devices: ['a', 'a'] })), ['steps[0].devices[1]: duplicate device "a"']);
    assert.deepEqual(issues(withStep({ devices: ['bad id'] })), ['steps[0].devices[0]: must be 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)']);
  });

  it('rejects bad label selectors', () => {
    assert.deepEqual(issues({ ...base(), target: { matchExpressions: [{ key: 'tier', operator: 'In' }] } }), ['target.matchExpressions[0].values: operator In needs at least one value']);
    assert.deepEqual(issues({ ...base(), target: { matchExpressions: [{ key: 'tier', operator: 'Exists', values: ['x'] }] } }), ['target.matchExpressions[0].values: operator Exists takes no values']);
    assert.deepEqual(issues({ ...base(), target: { matchExpressions: [{ key: 'tier', operator: 'Like', values: ['x'] }] } }), [
      'target.matchExpressions[0].operator: must be one of "In", "NotIn", "Exists", "DoesNotExist"',
    ]);
    assert.deepEqual(issues(withStep({ selector: { matchLabel: { pilot: 'true' } } })), ['steps[0].selector.matchLabel: unknown field']);
    assert.deepEqual(issues({ ...base(), target: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['x'.repeat(257)] }] } }), ['target.matchExpressions[0].values[0]: must be at most 256 characters']);
    assert.deepEqual(issues({ ...base(), target: { matchExpressions: [{ key: 'a/b', operator: 'Exists' }] } }), ['target.matchExpressions[0].key: label keys are 1-64 characters of A-Z a-z 0-9 . _ -']);
  });

  it('selects by every label a device can be enrolled with (keys 1-64 of A-Z a-z 0-9 . _ -, values up to 256 characters)', () => {
    const selector = { matchLabels: { _zone: 'a', [`k${'.'.repeat(63)}`]: 'v', site: 'x'.repeat(256) }, matchExpressions: [{ key: '-edge-', operator: 'Exists' }] };
    assert.deepEqual(validateRolloutSpec({ ...base(), target: selector }).target, selector);
    assert.doesNotThrow(() => validateRolloutSpec(withStep({ selector })));
  });

  it('rejects bad analysis metrics with the exact path', () => {
    const analysis = (metric: unknown) => withStep({ analysis: { metrics: [metric] } });
    assert.deepEqual(issues(analysis(queryMetric({ successCondition: 'resutl[0] > 1' }))), [
      'steps[0].analysis.metrics[0].successCondition: unknown name "resutl" (known: args.candidateVersion, args.cohort, args.cohortSize, args.fleet, args.model, args.rollout, args.step, baseline, candidateVersion, cohort, cohortSize, fleet, model, result, rollout, step) at column 1',
    ]);
    assert.deepEqual(issues(analysis(queryMetric({ failureCondition: 'result[0] >' }))), ['steps[0].analysis.metrics[0].failureCondition: expected a value, found end of expression at column 12']);
    // Argo Rollouts' Prometheus provider takes its address in the spec; fleetprune's server has it.
    assert.deepEqual(issues(analysis({ name: 'acc', successCondition: 'result[0] >= 0.9', provider: { prometheus: { address: 'http://prometheus:9090', query: 'avg(x)' } } })), [
      "steps[0].analysis.metrics[0].provider.prometheus.address: is not part of a spec: the server's --prometheus-url (or FLEETPRUNE_PROMETHEUS_URL) says where Prometheus is",
    ]);
    assert.deepEqual(issues(analysis(queryMetric({ successCondition: 'result <= baseline' }))), ['steps[0].analysis.metrics[0].successCondition: uses "baseline" but the provider has no baselineQuery']);
    assert.deepEqual(issues(analysis(queryMetric({ count: 3 }))), ['steps[0].analysis.metrics[0].interval: is required when count is more than 1 (count is 3)']);
    assert.deepEqual(issues(analysis(queryMetric({ interval: '500ms' }))), ['steps[0].analysis.metrics[0].interval: must be at least 1s']);
    assert.deepEqual(issues(analysis(queryMetric({ failureLimit: -2 }))), ['steps[0].analysis.metrics[0].failureLimit: must be ≥ -1']);
    assert.deepEqual(issues(analysis(queryMetric({ minSamples: 0 }))), ['steps[0].analysis.metrics[0].minSamples: must be ≥ 1']);
    assert.deepEqual(issues(analysis(queryMetric({ count: 1.5 }))), ['steps[0].analysis.metrics[0].count: must be an integer']);
    assert.deepEqual(issues(analysis(queryMetric({ name: 'Bad Name' }))), ['steps[0].analysis.metrics[0].name: must be 1-63 characters of a-z 0-9 _ - (starting and ending with a letter or digit)']);
    assert.deepEqual(issues(analysis(queryMetric({ provider: {} }))), ['steps[0].analysis.metrics[0].provider: must name exactly one provider (prometheus or builtin), found none']);
    assert.deepEqual(issues(analysis(queryMetric({ provider: { prometheus: { query: 'a' }, builtin: { query: 'b' } } }))), [
      'steps[0].analysis.metrics[0].provider: must name exactly one provider (prometheus or builtin), found prometheus and builtin',
    ]);
    assert.deepEqual(issues(analysis(queryMetric({ provider: { prometheus: { query: '   ' } } }))), ['steps[0].analysis.metrics[0].provider.prometheus.query: must not be empty']);
    assert.deepEqual(issues(analysis(queryMetric({ provider: { datadog: { query: 'a' } } }))), [
      'steps[0].analysis.metrics[0].provider.datadog: unknown field',
      'steps[0].analysis.metrics[0].provider: must name exactly one provider (prometheus or builtin), found none',
    ]);
    assert.deepEqual(issues(analysis(queryMetric({ provider: { prometheus: { query: 'up{job="{{args.jbo}}"}' } } }))), [
      'steps[0].analysis.metrics[0].provider.prometheus.query: unknown argument "{{args.jbo}}" (known: rollout, model, candidateVersion, cohort, cohortSize, step, fleet)',
    ]);
    assert.deepEqual(issues(analysis({ name: 'm', provider: { prometheus: { query: 'up' } } })), ['steps[0].analysis.metrics[0]: needs successCondition or failureCondition (or both)']);
    assert.deepEqual(issues(analysis({ name: 'm', successCondition: 'true' })), ['steps[0].analysis.metrics[0]: needs a provider (prometheus or builtin) or a relative check']);
  });

  it('rejects durations and limits no analysis could honour (infinite, beyond a year, a 0s timeout, an unreachable consecutiveSuccessLimit, a count beyond 10080)', () => {
    const analysis = (metric: unknown) => withStep({ analysis: { metrics: [metric] } });
    const endless = `${'9'.repeat(400)}h`; // parses to Infinity, which JSON stores as null
    assert.deepEqual(issues(analysis(queryMetric({ interval: endless, count: 2 }))), ['steps[0].analysis.metrics[0].interval: must be at most 8784h']);
    assert.deepEqual(issues(analysis(queryMetric({ interval: '9000h', count: 2 }))), ['steps[0].analysis.metrics[0].interval: must be at most 8784h']);
    assert.deepEqual(issues(analysis(queryMetric({ initialDelay: endless }))), ['steps[0].analysis.metrics[0].initialDelay: must be at most 8784h']);
    assert.deepEqual(issues(withStep({ pause: { duration: endless } })), ['steps[0].pause.duration: must be at most 8784h']);
    assert.deepEqual(issues({ ...base(), offline: { maxBackoff: endless } }), ['offline.maxBackoff: must be at most 8784h']);
    assert.deepEqual(issues(analysis(queryMetric({ provider: { prometheus: { query: 'up', timeout: '0s' } } }))), ['steps[0].analysis.metrics[0].provider.prometheus.timeout: must be more than 0s']);
    assert.deepEqual(issues(analysis(queryMetric({ provider: { prometheus: { query: 'up', timeout: '1000h' } } }))), [
      'steps[0].analysis.metrics[0].provider.prometheus.timeout: must be at most 10m (a hanging backend must not hold the rollout)',
    ]);
    assert.deepEqual(issues(analysis({ name: 'acc', relative: { metric: 'accuracy', window: '0s' } })), ['steps[0].analysis.metrics[0].relative.window: must be at least 1s']);
    assert.deepEqual(issues(analysis(queryMetric({ interval: '1m', count: 2, consecutiveSuccessLimit: 3 }))), [
      'steps[0].analysis.metrics[0].consecutiveSuccessLimit: 3 can never be reached in count 2 measurements',
    ]);
    assert.deepEqual(issues(analysis(queryMetric({ interval: '1s', count: 1e15 }))), ['steps[0].analysis.metrics[0].count: must be ≤ 10080']);
    validateRolloutSpec(analysis(queryMetric({ interval: '1m', count: 10_080 })));
    // At the limits, still accepted.
    const atLimits = validateRolloutSpec(analysis(queryMetric({ interval: '8784h', count: 2, consecutiveSuccessLimit: 2, provider: { prometheus: { query: 'up', timeout: '10m' } } })));
    assert.equal((atLimits.steps[0] as { metrics: readonly { intervalMs?: number }[] }).metrics[0]!.intervalMs, 8784 * 3_600_000);
  });

  it('rejects bad relative checks', () => {
    const analysis = (metric: unknown) => withStep({ analysis: { metrics: [metric] } });
    assert.deepEqual(issues(analysis({ name: 'acc', relative: { metric: 'f1' } })), [
      'steps[0].analysis.metrics[0].relative.metric: must be one of "accuracy", "mse", "latency_p95", "error_rate"',
    ]);
    assert.deepEqual(issues(analysis({ name: 'acc', relative: { metric: 'accuracy', confidence: 1 } })), ['steps[0].analysis.metrics[0].relative.confidence: must be < 1']);
    // A comparator against the metric's direction would pass a worse candidate (an MSE 4× its baseline's).
    assert.deepEqual(issues(analysis({ name: 'e', relative: { metric: 'mse', comparator: '>=' } })), [
      'steps[0].analysis.metrics[0].relative.comparator: ">=" would pass a candidate worse than its baseline: a lower mse is better, so the check is "<=" (leave comparator out for it)',
    ]);
    assert.deepEqual(issues(analysis({ name: 'acc', relative: { metric: 'accuracy', comparator: '<=' } })), [
      'steps[0].analysis.metrics[0].relative.comparator: "<=" would pass a candidate worse than its baseline: a higher accuracy is better, so the check is ">=" (leave comparator out for it)',
    ]);
    assert.deepEqual(issues(analysis({ name: 'acc', relative: { metric: 'accuracy', tolerance: -1 } })), ['steps[0].analysis.metrics[0].relative.tolerance: must be ≥ 0']);
    assert.deepEqual(issues(analysis({ name: 'acc', relative: { metric: 'accuracy', tolerance: 1, toleranceMode: 'relative' } })), [
      'steps[0].analysis.metrics[0].relative.tolerance: a relative tolerance of 1 with >= accepts any value; it must be below 1',
    ]);
    // Lower is better: up to twice the baseline is a bound like any other.
    validateRolloutSpec(analysis({ name: 'p95', relative: { metric: 'latency_p95', tolerance: 1 } }));
    assert.deepEqual(issues(analysis({ name: 'acc', relative: { metric: 'accuracy' }, successCondition: 'true' })), [
      'steps[0].analysis.metrics[0].relative: a relative check decides by itself; remove successCondition and failureCondition',
    ]);
    assert.deepEqual(issues(analysis({ name: 'acc', relative: { metric: 'accuracy' }, provider: { builtin: { query: 'x' } } })), [
      "steps[0].analysis.metrics[0]: has both relative and provider; a relative check queries the rollout's provider itself",
    ]);
  });

  it('rejects bad template references and arguments', () => {
    assert.deepEqual(issues(withStep({ analysis: {} })), ['steps[0].analysis: needs templates or metrics']);
    const [unknown] = issues(withStep({ analysis: { templates: [{ templateName: 'acuracy' }] } }));
    assert.match(unknown!, /^steps\[0\]\.analysis\.templates\[0\]\.templateName: unknown template "acuracy" \(known: fleetprune-accuracy, /);
    const template = { name: 'budget', args: [{ name: 'limit' }], metrics: [queryMetric({ successCondition: 'result[0] < limit' })] };
    assert.deepEqual(issues(withStep({ analysis: { templates: [{ templateName: 'budget' }] } }, { analysisTemplates: [template] })), [
      'steps[0].analysis.args: template "budget" needs argument "limit"',
    ]);
    assert.deepEqual(issues(withStep({ analysis: { templates: [{ templateName: 'budget' }], args: [{ name: 'limit', value: 1 }, { name: 'limt', value: 2 }] } }, { analysisTemplates: [template] })), [
      'steps[0].analysis.args[1].name: no template of this step declares argument "limt"',
    ]);
    assert.deepEqual(issues(withStep({ analysis: { templates: [{ templateName: 'budget' }], args: [{ name: 'limit' }] } }, { analysisTemplates: [template] })), [
      'steps[0].analysis.args[0].value: a step argument needs a value',
      'steps[0].analysis.args: template "budget" needs argument "limit"',
    ]);
    assert.deepEqual(issues(withStep({ analysis: { templates: [{ templateName: 'budget' }], args: [{ name: 'model', value: 'x' }, { name: 'limit', value: 1 }] } }, { analysisTemplates: [template] })), [
      'steps[0].analysis.args[0].name: "model" is set by the rollout',
      'steps[0].analysis.args[0].name: no template of this step declares argument "model"',
    ]);
    const badTemplate = { name: 'broken', metrics: [queryMetric({ successCondition: 'result >> 1' })] };
    assert.deepEqual(issues(withStep({ analysis: { templates: [{ templateName: 'broken' }] } }, { analysisTemplates: [badTemplate] })), [
      'analysisTemplates[0].metrics[0].successCondition: expected a value, found ">" at column 9',
    ]);
    assert.deepEqual(issues(withStep({ analysis: { metrics: [queryMetric({}), queryMetric({})] } })), [
      'steps[0].analysis: two metrics are named "m"; metric names must be unique within a step',
    ]);
    assert.deepEqual(issues({ ...base(), analysisTemplates: [{ name: 'x', metrics: [] }] }), ['analysisTemplates[0].metrics: must list at least one metric']);
    // A template declaring an argument twice: which default would hold is not for the reader to guess.
    const twice = { name: 'budget', args: [{ name: 'limit', value: 0.01 }, { name: 'limit', value: 0.5 }], metrics: [queryMetric({ successCondition: 'result[0] < limit' })] };
    assert.deepEqual(issues(withStep({ analysis: { templates: [{ templateName: 'budget' }] } }, { analysisTemplates: [twice] })), [
      'analysisTemplates[0].args[1].name: duplicate argument "limit"',
    ]);
  });

  it('rejects, before any rollout runs, what would make every measurement an Error: an argument a condition uses that is not a number, a builtin query that does not parse', () => {
    const template = { name: 'budget', args: [{ name: 'limit', value: 0.01 }], metrics: [queryMetric({ successCondition: 'result[0] < limit' })] };
    assert.deepEqual(issues(withStep({ analysis: { templates: [{ templateName: 'budget' }], args: [{ name: 'limit', value: '1%' }] } }, { analysisTemplates: [template] })), [
      'steps[0].analysis.templates[0] (analysisTemplates[0]) metrics[0].successCondition: uses argument "limit", whose value "1%" is not a number',
    ]);
    // Of several steps using the template, the one passing the bad value is named (the template's path alone did not say which).
    const threeSteps = withStep({ analysis: { templates: [{ templateName: 'budget' }], args: [{ name: 'limit', value: 0.5 }] } }, { analysisTemplates: [template] });
    threeSteps.steps = [...threeSteps.steps, { analysis: { templates: [{ templateName: 'budget' }] } }, { analysis: { templates: [{ templateName: 'budget' }], args: [{ name: 'limit', value: '0.5%' }] } }];
    assert.deepEqual(issues(threeSteps), ['steps[2].analysis.templates[0] (analysisTemplates[0]) metrics[0].successCondition: uses argument "limit", whose value "0.5%" is not a number']);
    // The template's own default at fault, with steps passing another of its arguments: the template is named, once.
    const twoArgs = { name: 'budget', args: [{ name: 'limit', value: '1%' }, { name: 'floor', value: 0 }], metrics: [queryMetric({ successCondition: 'result[0] < limit && result[0] > floor' })] };
    const byDefault = withStep({ analysis: { templates: [{ templateName: 'budget' }], args: [{ name: 'floor', value: 0.1 }] } }, { analysisTemplates: [twoArgs] });
    byDefault.steps = [...byDefault.steps, { analysis: { templates: [{ templateName: 'budget' }], args: [{ name: 'floor', value: 0.2 }] } }];
    assert.deepEqual(issues(byDefault), ['analysisTemplates[0].metrics[0].successCondition: uses argument "limit", whose value "1%" is not a number']);
    // A builtin query a step's value breaks: that step is named.
    const queried = { name: 'q', args: [{ name: 'q' }], metrics: [{ name: 'm', provider: { builtin: { query: '{{args.q}}' } }, successCondition: 'result[0] > 0' }] };
    const byQuery = withStep({ analysis: { templates: [{ templateName: 'q' }], args: [{ name: 'q', value: 'fleetprune_device_accuracy_ratio' }] } }, { analysisTemplates: [queried] });
    byQuery.steps = [...byQuery.steps, { analysis: { templates: [{ templateName: 'q' }], args: [{ name: 'q', value: 'sum(up' }] } }];
    assert.deepEqual(issues(byQuery), ['steps[1].analysis.templates[0] (analysisTemplates[0]) metrics[0].provider.builtin.query: expected ")", found end of query (at character 7)']);
    const [shipped] = issues(withStep({ analysis: { templates: [{ templateName: 'fleetprune-candidate-errors' }], args: [{ name: 'maxErrorRatio', value: '1%' }] } }));
    assert.match(shipped!, /uses argument "maxErrorRatio", whose value "1%" is not a number$/);
    // The rollout's own arguments: its id and the cohort's device ids are never numbers; model and
    // version are checked as the spec gives them; the cohort size and step are numbers.
    const using = (condition: string, spec: Record<string, unknown> = {}) => issues({ ...withStep({ analysis: { metrics: [queryMetric({ successCondition: condition })] } }), ...spec });
    assert.deepEqual(using('result[0] >= 0.9 && rollout != 0'), ['steps[0].analysis.metrics[0].successCondition: uses argument "rollout", which the rollout sets to its id, not a number']);
    assert.deepEqual(using('result[0] > args.cohort'), ['steps[0].analysis.metrics[0].successCondition: uses argument "cohort", which the rollout sets to its devices\' ids, not a number']);
    assert.deepEqual(using('result[0] > model'), ['steps[0].analysis.metrics[0].successCondition: uses argument "model", whose value "wine" is not a number']);
    assert.deepEqual(using('result[0] > candidateVersion', { candidateVersion: 'v2' }), ['steps[0].analysis.metrics[0].successCondition: uses argument "candidateVersion", whose value "v2" is not a number']);
    validateRolloutSpec(withStep({ analysis: { metrics: [queryMetric({ successCondition: 'result[0] > candidateVersion && result[0] < cohortSize * step' })] } }));
    // An argument used only inside a query may be any text.
    const labelled = { name: 'by-site', args: [{ name: 'site' }], metrics: [queryMetric({ provider: { builtin: { query: 'sum(up{site="{{args.site}}"})' } } })] };
    validateRolloutSpec(withStep({ analysis: { templates: [{ templateName: 'by-site' }], args: [{ name: 'site', value: 'osaka' }] } }, { analysisTemplates: [labelled] }));

    const builtin = (query: string, extra: Record<string, unknown> = {}) => withStep({ analysis: { metrics: [queryMetric({ provider: { builtin: { query, ...extra } } })] } });
    assert.deepEqual(issues(builtin('sum(rate(x[5m])')), ['steps[0].analysis.metrics[0].provider.builtin.query: expected ")", found end of query (at character 16)']);
    const [unsupported] = issues(builtin('up', { baselineQuery: 'topk(3, up)' }));
    assert.match(unsupported!, /^steps\[0\]\.analysis\.metrics\[0\]\.provider\.builtin\.baselineQuery: .*does not support "topk"/);
    const [backtracking] = issues(builtin('up{device=~"(a)\\\\1"}'));
    assert.match(backtracking!, /provider\.builtin\.query: bad regular expression .* error parsing regexp: invalid escape sequence: `\\1`/);
    // An unknown argument is one issue, not also a parse error where it stands.
    assert.deepEqual(issues(builtin('up > {{args.limit}}')), [
      'steps[0].analysis.metrics[0].provider.builtin.query: unknown argument "{{args.limit}}" (known: rollout, model, candidateVersion, cohort, cohortSize, step, fleet)',
    ]);
    // The rollout's own arguments are in place when the query is parsed.
    validateRolloutSpec(builtin('sum(up{device=~"{{args.cohort}}"}) / {{args.cohortSize}}'));
    // Prometheus's PromQL is larger than the builtin subset: its queries are left to it.
    validateRolloutSpec(withStep({ analysis: { metrics: [queryMetric({ provider: { prometheus: { query: 'topk(3, up) offset 5m' } } })] } }));
  });

  it('rejects a condition that can never be true or false (every measurement would be an Error, and the rollout fail and revert)', () => {
    const condition = (successCondition: string) => issues(withStep({ analysis: { metrics: [queryMetric({ successCondition })] } }));
    const path = 'steps[0].analysis.metrics[0].successCondition';
    const wantsBoolean = 'needs true or false (a comparison such as result[0] >= 0.95), but this is a number';
    assert.deepEqual(condition('result[0]'), [`${path}: the condition ${wantsBoolean} at column 7`]);
    assert.deepEqual(condition('len(result)'), [`${path}: the condition ${wantsBoolean} at column 1`]);
    assert.deepEqual(condition('result[0] - 0.95'), [`${path}: the condition ${wantsBoolean} at column 11`]);
    assert.deepEqual(condition('result[0] > 0.9 && result[1]'), [`${path}: "&&" ${wantsBoolean} at column 26`]);
    assert.deepEqual(condition('all(result, {# + 1})'), [`${path}: the all() predicate ${wantsBoolean} at column 16`]);
    assert.deepEqual(condition('result[0] > true'), [`${path}: ">" needs a number, but this is true or false at column 13`]);
    assert.deepEqual(condition('result[-1] > 0'), [`${path}: index -1 is not a non-negative integer at column 7`]);
    assert.deepEqual(
      issues(withStep({ analysis: { metrics: [queryMetric({ successCondition: undefined, failureCondition: '!result[0]' })] } })),
      ['steps[0].analysis.metrics[0].failureCondition: "!" needs true or false (a comparison such as result[0] >= 0.95), but this is a number at column 8'],
    );
    // What evaluates to true or false stays accepted: the documented examples among them.
    for (const ok of ['result[0] >= 0.95', 'len(result) > 0 && all(result, {# > 0.9})', '!(result[0] > 0.01) or isNaN(result[0])', 'true', '(result[0] > 1) == false', '-result[0] < abs(min(result))']) {
      validateRolloutSpec(withStep({ analysis: { metrics: [queryMetric({ successCondition: ok })] } }));
    }
  });

  it('rejects bad offline policies', () => {
    assert.deepEqual(issues({ ...base(), offline: { initialBackoff: '1m', maxBackoff: '10s' } }), ['offline.maxBackoff: must be ≥ offline.initialBackoff']);
    assert.deepEqual(issues({ ...base(), offline: { maxAttempts: 0 } }), ['offline.maxAttempts: must be ≥ 1']);
  });

  it('puts every issue in the one-line message', () => {
    assert.throws(
      () => parseRolloutSpec('model: wine\ncandidateVersion: "2"\nsteps:\n  - setWeight: 0\n  - pause: {duration: soon}\n', 'r.yaml'),
      (error: unknown) =>
        error instanceof RolloutSpecError &&
        error.message === 'r.yaml: invalid rollout spec: steps[0].setWeight: must be > 0; steps[1].pause.duration: must be a duration such as 500ms, 30s, 5m or 1h30m',
    );
  });
});
