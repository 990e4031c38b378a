import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { engineMissing, freePort } from '../helpers/engines.ts';
import { fleetpruneMetricsIn, isExportedMetric } from '../helpers/metric-catalogue.ts';
import { PrometheusProcess, prometheusBinary, promtoolBinary } from '../helpers/prometheus.ts';

/**
 * deploy/prometheus with the real promtool: the configuration (and the file_sd target files it
 * references) is valid, the rule files are valid, and the rules' unit tests in
 * deploy/prometheus/tests pass. The compose variant (other target files) is checked too.
 */
const run = promisify(execFile);
const PROM_DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const promtool = promtoolBinary();

async function promtoolRun(args: string[], cwd = PROM_DIR): Promise<string> {
  try {
    const { stdout, stderr } = await run(promtool!, args, { cwd, timeout: 120_000 }); // rule tests evaluate hours of series: slow on a loaded machine
    return stdout + stderr;
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    assert.fail(`promtool ${args.join(' ')} failed:\n${failure.stdout ?? ''}${failure.stderr ?? failure.message}`);
  }
}

async function ruleFiles(): Promise<string[]> {
  return (await readdir(join(PROM_DIR, 'rules'))).filter((name) => name.endsWith('.yml')).sort().map((name) => join('rules', name));
}

test('promtool check config: prometheus.yml, its rule files and file_sd targets', async (t) => {
  if (!promtool) return engineMissing(t, 'promtool', 'no promtool at /usr/bin/promtool or on PATH (apt-get install prometheus)');
  const output = await promtoolRun(['check', 'config', 'prometheus.yml']);
  assert.match(output, /SUCCESS: prometheus\.yml is valid/);
  assert.match(output, new RegExp(`SUCCESS: ${(await ruleFiles()).length} rule files found`));
  const config = parse(await readFile(join(PROM_DIR, 'prometheus.yml'), 'utf8')) as { scrape_configs: { job_name: string }[] };
  // The analyses, the provider and the alerts use these job names.
  assert.deepEqual(config.scrape_configs.map((job) => job.job_name), ['fleetprune', 'fleetprune-agent']);
});

test('promtool check rules, and every fleetprune_* metric a rule reads is one the server or agent exports', async (t) => {
  if (!promtool) return engineMissing(t, 'promtool', 'no promtool at /usr/bin/promtool or on PATH (apt-get install prometheus)');
  const files = await ruleFiles();
  assert.ok(files.length >= 2, 'recording and alerting rules');
  const output = await promtoolRun(['check', 'rules', ...files]);
  assert.doesNotMatch(output, /FAILED/);
  const unknown: string[] = [];
  let alerts = 0;
  for (const file of files) {
    const doc = parse(await readFile(join(PROM_DIR, file), 'utf8')) as { groups: { rules: { expr: string; alert?: string }[] }[] };
    for (const rule of doc.groups.flatMap((group) => group.rules)) {
      if (rule.alert) alerts++;
      for (const name of fleetpruneMetricsIn(rule.expr)) if (!isExportedMetric(name)) unknown.push(`${file}: ${name}`);
    }
  }
  assert.deepEqual(unknown, [], 'metric names not in shared/metrics/*');
  assert.ok(alerts >= 5, `${alerts} alerts`);
});

test('promtool test rules: the rule unit tests in deploy/prometheus/tests pass', async (t) => {
  if (!promtool) return engineMissing(t, 'promtool', 'no promtool at /usr/bin/promtool or on PATH (apt-get install prometheus)');
  const tests = (await readdir(join(PROM_DIR, 'tests'))).filter((name) => name.endsWith('.yml')).sort().map((name) => join('tests', name));
  assert.ok(tests.length >= 2);
  const output = await promtoolRun(['test', 'rules', ...tests]);
  assert.equal(output.match(/SUCCESS/g)?.length, tests.length, output);
  // Every alert has at least one unit test.
  const tested = new Set<string>();
  for (const file of tests) {
    for (const match of (await readFile(join(PROM_DIR, file), 'utf8')).matchAll(/alertname: (\w+)/g)) tested.add(match[1]!);
  }
  const alerts = (await readFile(join(PROM_DIR, 'rules', 'fleetprune-alerts.yml'), 'utf8')).matchAll(/- alert: (\w+)/g);
  const untested = [...alerts].map((match) => match[1]!).filter((name) => !tested.has(name));
  assert.deepEqual(untested, [], 'alerts without a unit test');
  // Every per-model recording rule (the dashboards' candidate vs baseline series: accuracy for
  // classifiers, MSE for regressors, latency, error ratios) is the expression of a unit test.
  const exprs: string[] = [];
  for (const file of tests) {
    const doc = parse(await readFile(join(PROM_DIR, file), 'utf8')) as { tests: { promql_expr_test?: { expr: string }[] }[] };
    for (const unit of doc.tests) for (const { expr } of unit.promql_expr_test ?? []) exprs.push(expr);
  }
  const recording = parse(await readFile(join(PROM_DIR, 'rules', 'fleetprune-recording.yml'), 'utf8')) as { groups: { name: string; rules: { record?: string }[] }[] };
  const modelRules = recording.groups.find((group) => group.name === 'fleetprune-models')!.rules.flatMap((rule) => (rule.record ? [rule.record] : []));
  for (const name of ['model_version_role_cohort:fleetprune_device_accuracy_ratio:avg', 'model_version_role_cohort:fleetprune_device_mse:avg']) assert.ok(modelRules.includes(name), `recording rule ${name}`);
  const isIn = (name: string, expr: string) => new RegExp(`(?<![\\w:])${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w:])`).test(expr);
  assert.deepEqual(modelRules.filter((name) => !exprs.some((expr) => isIn(name, expr))), [], 'per-model recording rules without a unit test');
});

test('the agents job names each target without a device label after its host, IPv6 addresses too (a real Prometheus)', async (t) => {
  const binary = prometheusBinary();
  if (!binary) return engineMissing(t, 'prometheus', 'no prometheus at /usr/bin/prometheus or on PATH (apt-get install prometheus)');
  const shipped = parse(await readFile(join(PROM_DIR, 'prometheus.yml'), 'utf8')) as { scrape_configs: { job_name: string }[] };
  const agents = shipped.scrape_configs.find((job) => job.job_name === 'fleetprune-agent');
  assert.ok(agents, 'the shipped config has the fleetprune-agent job');
  // Nothing listens on the port: discovery and relabelling name the targets all the same.
  const port = await freePort();
  const targets = [
    { targets: [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `[fe80::1]:${port}`] },
    { targets: [`127.0.0.2:${port}`], labels: { device: 'pump-7' } },
  ];
  const prometheus = await PrometheusProcess.start(binary, async (dir) => {
    await mkdir(join(dir, 'targets', 'agents'), { recursive: true });
    await writeFile(join(dir, 'targets', 'agents', 'site.yml'), stringify(targets));
    const config = join(dir, 'prometheus.yml');
    await writeFile(config, stringify({ global: { scrape_interval: '1m' }, scrape_configs: [agents] }));
    return config;
  });
  t.after(() => prometheus.stop());
  const devices = async () => {
    const answer = (await (await fetch(`${prometheus.url}/api/v1/targets?state=active`)).json()) as { data: { activeTargets: { labels: Record<string, string> }[] } };
    return Object.fromEntries(answer.data.activeTargets.map(({ labels }) => [labels.instance!, labels.device ?? null]));
  };
  await prometheus.waitFor('the five targets discovered', async () => Object.keys(await devices()).length === 5 || JSON.stringify(await devices()));
  assert.deepEqual(await devices(), {
    [`127.0.0.1:${port}`]: '127.0.0.1',
    [`localhost:${port}`]: 'localhost',
    [`[::1]:${port}`]: '::1',
    [`[fe80::1]:${port}`]: 'fe80::1',
    [`127.0.0.2:${port}`]: 'pump-7',
  });
});
