import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { parseRolloutSpec, RolloutSpecError } from '../../server/rollout/rollout-spec.ts';
import { UserError } from '../../shared/util/errors.ts';
import { specWarnings } from '../../server/rollout/spec-warnings.ts';
import { isOneLineError, runCli, runCliBatch, tempDir } from '../helpers/cli.ts';
import { ADMIN_TOKEN } from '../server/helpers/test-server.ts';
import { grpcClient } from '../server/helpers/grpc-client.ts';
import { startRolloutServer } from '../rollout-api/helpers/rollout-server.ts';

/** A spec whose analysis runs `query` on the builtin provider. */
function builtinSpec(query: { query?: string; baselineQuery?: string; samplesQuery?: string }): string {
  const fields = Object.entries({ query: '1', ...query }).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join(', ');
  const condition = query.baselineQuery ? 'result[0] >= baseline[0]' : 'result[0] >= 0';
  return `model: wine\ncandidateVersion: "2"\nsteps:\n  - setWeight: 50\n  - analysis: {metrics: [{name: m, provider: {builtin: {${fields}}}, successCondition: "${condition}"}]}\n  - setWeight: 100\n`;
}

const deep = `${'('.repeat(5000)}1${')'.repeat(5000)}`;
const signs = `${'-'.repeat(40_000)}1`;

test('a builtin query nested thousands deep is a spec error naming the field, not a stack overflow', () => {
  for (const [field, text] of [['query', deep], ['query', signs], ['baselineQuery', deep], ['samplesQuery', signs]] as const) {
    assert.throws(
      () => parseRolloutSpec(builtinSpec({ [field]: text }), 'spec'),
      (error: unknown) =>
        error instanceof RolloutSpecError &&
        error.message === `spec: invalid rollout spec: steps[1].analysis.metrics[0].provider.builtin.${field}: the query is nested too deeply to parse`,
      field,
    );
  }
  // Nesting a parser can take stays accepted.
  assert.equal(parseRolloutSpec(builtinSpec({ query: `${'('.repeat(200)}1${')'.repeat(200)}` }), 'spec').steps.length, 3);
});

test('rollout validate: a deeply nested builtin query is exit 2 and one line, not an internal error', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'deep.yaml');
  await writeFile(file, builtinSpec({ query: deep }));
  const result = await runCli(['rollout', 'validate', '-f', file]);
  assert.equal(result.code, 2, result.stderr);
  assert.ok(isOneLineError(result.stderr), result.stderr);
  assert.equal(result.stderr, 'fleetprune: spec: invalid rollout spec: steps[1].analysis.metrics[0].provider.builtin.query: the query is nested too deeply to parse\n');
});

test('gRPC StartRollout: a deeply nested builtin query is INVALID_ARGUMENT, nothing is stored and the server goes on', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());
  await assert.rejects(
    grpc.call('StartRollout', { spec: builtinSpec({ query: deep }) }),
    (error: any) => error.code === status.INVALID_ARGUMENT && /provider\.builtin\.query: the query is nested too deeply to parse$/.test(error.details),
  );
  assert.equal((await grpc.call('ListRollouts', {})).rollouts.length, 0);
  assert.equal(s.fleet.calls.length, 0);
  const started = await grpc.call('StartRollout', { spec: builtinSpec({}) });
  assert.match(started.id, /^ro-/);
});

/**
 * A spec under the size limit whose 99 aliases repeat a list of `anchored` device ids (all `ids`
 * of its first step by default; else the first step lists `ids` and the second is the anchor).
 */
function aliasedDevicesSpec(ids: number, anchored = ids): string {
  const list = (count: number) => Array.from({ length: count }, (_, i) => `d${i}`).join(',');
  const first = anchored === ids ? `  - devices: &all [${list(ids)}]\n` : `  - devices: [${list(ids)}]\n  - devices: &all [${list(anchored)}]\n`;
  return `model: wine\ncandidateVersion: "2"\nsteps:\n${first}${Array.from({ length: 99 }, () => '  - devices: *all').join('\n')}\n`;
}

/**
 * The CPU time `run` takes, in ms: this process's, so other processes loading the machine do not
 * count (wall-clock time under a loaded test runner varies several-fold).
 */
function cpuMs(run: () => void): number {
  const before = process.cpuUsage();
  run();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

test('aliases that repeat a large anchor (9 million values from 600 KB) are refused at once, not checked for seconds', (t) => {
  const text = aliasedDevicesSpec(90_000);
  assert.ok(Buffer.byteLength(text) < 1024 * 1024, `${Buffer.byteLength(text)} bytes`);
  // Refused before its values are walked (checking all of them took some 16 s).
  const refusedMs = cpuMs(() =>
    assert.throws(
      () => parseRolloutSpec(text, 'spec'),
      (error: unknown) => error instanceof UserError && error.message === "spec: the spec's aliases expand it to more than 1048576 values; write it without repeating large anchors, or an anchor inside itself",
    ),
  );
  // "At once" is as fast as reading a spec of its size (parsing 600 KB of YAML is the floor): one
  // listing the 90,000 ids once, its aliases repeating two, is read and accepted in about as
  // long. Walking the 9 million values first took ten times as long; the bound is four.
  const sameSize = aliasedDevicesSpec(90_000, 2);
  const readMs = cpuMs(() => assert.equal(parseRolloutSpec(sameSize, 'spec').steps.length, 101));
  t.diagnostic(`refused in ${refusedMs.toFixed(0)} ms of CPU; the same size read in ${readMs.toFixed(0)} ms`);
  assert.ok(refusedMs < 4 * readMs, `refused in ${refusedMs.toFixed(0)} ms of CPU; a spec of its size is read in ${readMs.toFixed(0)} ms`);
  // Aliases as specs use them (a shared selector, a device list used twice) stay accepted.
  const shared = parseRolloutSpec(
    'model: wine\ncandidateVersion: "2"\ntarget: &north {matchLabels: {site: north}}\nsteps:\n  - devices: &pilot [dev-01, dev-02]\n  - selector: *north\n  - devices: *pilot\n',
    'spec',
  );
  assert.deepEqual(shared.steps.map((step) => step.kind), ['devices', 'selector', 'devices']);
  assert.equal(aliasedDevicesSpec(10_000).length > 0 && parseRolloutSpec(aliasedDevicesSpec(10_000), 'spec').steps.length, 100);
});

/**
 * The status /healthz answers, on a connection of its own: a server held up past its keep-alive
 * timeout closes a reused one under the request (fetch then fails) instead of answering late.
 */
function healthz(baseUrl: string): Promise<number> {
  return new Promise((resolve, reject) => {
    httpGet(`${baseUrl}/healthz`, { agent: false }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode!));
    }).on('error', reject);
  });
}

/** A template of `metrics` metrics, each with a ~1,900-character condition, used by `steps` analysis steps. */
function templateUsedInSteps(steps: number, metrics: number): string {
  let sum = 'baseline[0]';
  while (sum.length < 1900) sum += ' + baseline[0]';
  const lines = Array.from({ length: metrics }, (_, i) => `      - {name: m${i}, provider: {builtin: {query: "1", baselineQuery: "1"}}, successCondition: "(${sum}) * 0 == 0"}`);
  return `model: wine\ncandidateVersion: "2"\nanalysisTemplates:\n  - name: heavy\n    metrics:\n${lines.join('\n')}\nsteps:\n  - setWeight: 50\n${Array.from({ length: steps }, () => '  - analysis: {templates: [{templateName: heavy}]}').join('\n')}\n`;
}

test('a template used in many steps cannot expand an 87 KB spec to one too large to store; the refusal is at once', (t) => {
  const text = templateUsedInSteps(999, 20);
  assert.ok(text.length < 100_000, `${text.length} characters`);
  // Refused before it is resolved (resolving it took 7 s and 740 MB).
  const refused = (steps: number) =>
    cpuMs(() =>
      assert.throws(
        () => parseRolloutSpec(steps === 999 ? text : templateUsedInSteps(steps, 20), 'spec'),
        (error: unknown) =>
          error instanceof RolloutSpecError &&
          /^spec: invalid rollout spec: steps\[27\]\.analysis\.templates\[0\]: the analysis steps resolve to more than 1048576 characters of metrics \(a template counts at each use\); use templates in fewer steps or make them smaller$/.test(error.message),
      ),
    );
  // Used in 30 steps, the template passes the limit at the same use (steps[27]): refusing it
  // resolves as much. Refusing the 999 uses costs about as much more as reading 969 more
  // steps (twice or so); resolving them all took 30 times as long. The bound is eight.
  const refusedMs = refused(999);
  const thirtyMs = refused(30);
  t.diagnostic(`999 uses refused in ${refusedMs.toFixed(0)} ms of CPU, 30 uses in ${thirtyMs.toFixed(0)} ms`);
  assert.ok(refusedMs < 8 * thirtyMs, `999 uses refused in ${refusedMs.toFixed(0)} ms of CPU, 30 uses in ${thirtyMs.toFixed(0)} ms`);
  // The same template used in a few steps, and a spec of 1 MB written out without templates, stay accepted.
  assert.equal(parseRolloutSpec(templateUsedInSteps(3, 20), 'spec').steps.length, 4);
});

test('gRPC StartRollout: a template expansion bomb is INVALID_ARGUMENT, answered while the server stays responsive, nothing stored', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());
  // What refusing the bomb may hold the event loop for: the same template in 30 steps passes the
  // limit at the same use (steps[27]), so refusing it here does as much.
  const reading = performance.now();
  assert.throws(() => parseRolloutSpec(templateUsedInSteps(30, 20), 'spec'), /resolve to more than 1048576 characters of metrics/);
  const thirtyMs = performance.now() - reading;
  // 999 uses of 20 metrics: 39 million characters resolved from an 87 KB spec.
  let answered = false;
  const refused = assert.rejects(
    grpc.call('StartRollout', { spec: templateUsedInSteps(999, 20) }).finally(() => (answered = true)),
    (error: any) => error.code === status.INVALID_ARGUMENT && /resolve to more than 1048576 characters of metrics/.test(error.details),
  );
  // /healthz is asked again and again until the call is answered: the longest wait for an answer
  // is how long the server held its event loop (the server runs in this process, so the gap
  // includes the whole refusal). Resolving all 999 uses held it for 26 s on a loaded machine, 20 times
  // what refusing 30 took there.
  let healthAnswers = 0;
  let longestGapMs = 0;
  let last = performance.now();
  while (!answered) {
    assert.equal(await healthz(s.baseUrl), 200);
    const now = performance.now();
    healthAnswers++;
    longestGapMs = Math.max(longestGapMs, now - last);
    last = now;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await refused;
  t.diagnostic(`/healthz answered ${healthAnswers} times during the call; longest gap ${longestGapMs.toFixed(0)} ms; refusing 30 uses took ${thirtyMs.toFixed(0)} ms`);
  assert.ok(healthAnswers >= 1, 'the server answered /healthz while the call was in flight');
  assert.ok(longestGapMs < 10 * thirtyMs + 1000, `/healthz waited ${longestGapMs.toFixed(0)} ms for an answer; refusing 30 uses took ${thirtyMs.toFixed(0)} ms`);
  assert.equal((await grpc.call('ListRollouts', {})).rollouts.length, 0);
  assert.equal(await s.server.ctx.store.audit.count(), 2, 'only the two version registrations of the fixture');
});

test('errors that quote a spec\'s newlines or escape sequences stay one escaped line: rollout validate and start (gRPC)', async (t) => {
  const s = await startRolloutServer(t);
  if (!s) return;
  const dir = await tempDir(t);
  const specs = {
    // Refused by validation, here and at the server.
    key: { text: 'model: wine\ncandidateVersion: "2"\n"x\\nforged line": 1\nsteps: [{setWeight: 10}]\n', local: true, shown: 'x\\nforged line: unknown field' },
    template: { text: 'model: wine\ncandidateVersion: "2"\nsteps: [{analysis: {templates: [{templateName: "a\\u001b[2Jforged"}]}}]\n', local: true, shown: 'unknown template "a\\x1b[2Jforged"' },
    proto: { text: '{"model": "wine", "candidateVersion": "2", "steps": [{"setWeight": 10}], "x\\ny": {"__proto__": 1}}', local: true, shown: 'invalid rollout spec: x\\ny.__proto__: ' },
    // Valid specs the server refuses.
    version: { text: 'model: wine\ncandidateVersion: "2\\nforged line\\u001b[31m"\nsteps: [{setWeight: 10}]\n', local: false, shown: 'no version wine@2\\nforged line\\x1b[31m in the registry' },
    target: { text: 'model: wine\ncandidateVersion: "2"\ntarget: {matchLabels: {site: "x\\r\\nforged\\u009b2J"}}\nsteps: [{setWeight: 10}]\n', local: false, shown: 'matches site=x\\r\\nforged\\x9b2J' },
  };
  const connection = ['--server', s.grpcAddress, '--token', ADMIN_TOKEN];
  const cases: { name: string; shown: string; args: string[] }[] = [];
  for (const [name, spec] of Object.entries(specs)) {
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, spec.text);
    cases.push({ name: `start ${name}`, shown: spec.shown, args: ['rollout', 'start', '-f', file, ...connection] });
    if (spec.local) cases.push({ name: `validate ${name}`, shown: spec.shown, args: ['rollout', 'validate', '-f', file] });
  }
  const results = await runCliBatch(cases.map(({ args }) => ({ args })));
  results.forEach((result, index) => {
    const { name, shown } = cases[index]!;
    assert.equal(result.code, 2, `${name}: ${result.stderr}`);
    assert.ok(isOneLineError(result.stderr), `${name}: ${JSON.stringify(result.stderr)}`);
    assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/.test(result.stderr), `${name}: ${JSON.stringify(result.stderr)}`);
    assert.ok(result.stderr.includes(shown), `${name}: ${JSON.stringify(result.stderr)}`);
  });
  const grpc = grpcClient(s.grpcAddress, 'Rollouts', ADMIN_TOKEN);
  t.after(() => grpc.close());
  assert.equal((await grpc.call('ListRollouts', {})).rollouts.length, 0);
});

test('warnings about a valid 1 MB spec of long constant conditions come at once, the ones not probed named in one warning', () => {
  let sum = 'baseline[0]';
  while (sum.length < 1900) sum += ' + baseline[0]';
  const step = `  - analysis: {metrics: [{name: m, provider: {builtin: {query: "1", baselineQuery: "1"}}, successCondition: "(${sum}) * 0 == 0"}]}`;
  const text = `model: wine\ncandidateVersion: "2"\nsteps:\n${Array.from({ length: 500 }, () => step).join('\n')}\n`;
  assert.ok(Buffer.byteLength(text) < 1024 * 1024);
  const spec = parseRolloutSpec(text, 'spec');
  // Probing every condition held the event loop 6 to 10 s: past a budget, the rest are named as not probed.
  const warnings = specWarnings(spec);
  assert.match(warnings.at(-1)!, /^\d+ conditions were not checked for verdicts that decide nothing: the spec's conditions are too many or too long to check them all$/);
  assert.ok(warnings.length > 1 && warnings.length < 500, String(warnings.length));
  assert.match(warnings[0]!, /^steps\[0\]\.analysis metric "m": successCondition ".*" is true whatever the query returns: it passes every measurement$/);
});

test('a builtin query with a malformed placeholder ({{args.model}) is refused at validation, not by every measurement', () => {
  for (const query of ['sum(x{model="{{args.model}}"}) / {{args.cohortSize}', 'count(up{device=~"{{ args.cohort }}"}) {{']) {
    assert.throws(
      () => parseRolloutSpec(builtinSpec({ query }), 'spec'),
      (error: unknown) => error instanceof RolloutSpecError && error.issues.length === 1 && error.issues[0]!.path === 'steps[1].analysis.metrics[0].provider.builtin.query',
      query,
    );
  }
  // An unknown argument is one issue, as before (the query is not parsed as well).
  assert.throws(
    () => parseRolloutSpec(builtinSpec({ query: 'sum(x{model="{{args.nope}}"}) / {{args.cohortSize}}' }), 'spec'),
    (error: unknown) => error instanceof RolloutSpecError && error.issues.length === 1 && /unknown argument "\{\{args\.nope\}\}"/.test(error.issues[0]!.message),
  );
  assert.equal(parseRolloutSpec(builtinSpec({ query: 'sum(x{model="{{args.model}}"}) / {{args.cohortSize}}' }), 'spec').steps.length, 3);
});

test('a malformed placeholder inside a quoted label value is refused, for Prometheus and builtin queries alike (it was sent as written and matched nothing)', () => {
  const prometheusSpec = (query: string) =>
    `model: wine\ncandidateVersion: "2"\nsteps:\n  - setWeight: 50\n  - analysis: {metrics: [{name: m, provider: {prometheus: {query: ${JSON.stringify(query)}}}, successCondition: "result[0] >= 0"}]}\n  - setWeight: 100\n`;
  const cases: [string, (query: string) => string, string][] = [
    ['sum(x{model="{{args.model}"})', prometheusSpec, 'prometheus'],
    ['sum(x{model="{args.model}}"})', prometheusSpec, 'prometheus'],
    ['sum(x{model="{{model}}"})', prometheusSpec, 'prometheus'],
    ['sum(x{model="{{args.model}"})', (query) => builtinSpec({ query }), 'builtin'],
  ];
  for (const [query, spec, kind] of cases) {
    assert.throws(
      () => parseRolloutSpec(spec(query), 'spec'),
      (error: unknown) =>
        error instanceof RolloutSpecError &&
        error.issues.length === 1 &&
        error.issues[0]!.path === `steps[1].analysis.metrics[0].provider.${kind}.query` &&
        /^a malformed placeholder near ".*" \(write \{\{args\.NAME\}\}\)$/.test(error.issues[0]!.message),
      query,
    );
  }
  // Well-formed placeholders, with or without spaces, and single braces of PromQL and regexes pass.
  for (const query of ['sum(x{model="{{args.model}}", v=~"{{ args.candidateVersion }}"})', 'count(x{id=~"a{2}"})']) {
    assert.equal(parseRolloutSpec(prometheusSpec(query), 'spec').steps.length, 3, query);
  }
});

test('YAML typed values (!!binary, !!timestamp), several documents and an anchor used inside itself are refused in words of the spec, not of the YAML library', () => {
  const spec = (target: string) => `model: wine\ncandidateVersion: "2"\ntarget: ${target}\nsteps:\n  - setWeight: 100\n`;
  const refused = (text: string, message: string) =>
    assert.throws(() => parseRolloutSpec(text, 'spec'), (error: unknown) => error instanceof UserError && error.message === message, message);
  // A Buffer's methods were listed as unknown keys of `target`.
  refused(spec('!!binary aGVsbG8='), 'spec: invalid rollout spec: target: a YAML !!binary is not accepted; write text');
  refused(spec('{matchLabels: {site: !!binary aGVsbG8=}}'), 'spec: invalid rollout spec: target.matchLabels.site: a YAML !!binary is not accepted; write text');
  refused(`model: wine\ncandidateVersion: !!timestamp 2026-01-01\nsteps:\n  - setWeight: 100\n`, 'spec: invalid rollout spec: candidateVersion: a YAML !!timestamp is not accepted; write it as a quoted string');
  // It was "please use YAML.parseAllDocuments()".
  refused(`${spec('{matchLabels: {site: north}}')}---\nmodel: iris\n`, 'spec: the text holds 2 YAML documents (a second one starts at line 6, after ---); give one rollout spec at a time');
  refused(`model: wine\ncandidateVersion: "2"\nsteps: &x\n  - setWeight: 100\n  - *x\n`, "spec: the spec's aliases expand it to more than 1048576 values; write it without repeating large anchors, or an anchor inside itself");
  // A document start marker before the one spec is fine, so is an empty document after it (a
  // trailing ---, one holding only comments), and quoted dates are text.
  assert.equal(parseRolloutSpec(`---\n${spec('{matchLabels: {site: "2026-01-01"}}')}`, 'spec').steps.length, 1);
  assert.equal(parseRolloutSpec(`${spec('{matchLabels: {site: north}}')}---\n`, 'spec').steps.length, 1);
  assert.equal(parseRolloutSpec(`${spec('{matchLabels: {site: north}}')}...\n---\n# the next one is in pilot.yaml\n`, 'spec').steps.length, 1);
  // A broken spec before an empty document, or after one, still names the line (it said "document").
  refused('model: [\n---\n', 'spec: not valid YAML or JSON (line 2, column 1): Flow sequence in block collection must be sufficiently indented and end with a ]');
  refused('---\n# pilot.yaml\n---\nmodel: {a: 1\n', 'spec: not valid YAML or JSON (line 5, column 1): Flow map in block collection must be sufficiently indented and end with a }');
});
