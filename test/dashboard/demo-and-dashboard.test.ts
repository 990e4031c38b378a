import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../shared/util/log.ts';
import type { DeviceView } from '../../server/fleet/device-view.ts';
import { runDemo } from '../../server/demo/demo-run.ts';
import { RestClient, waitFor } from '../../server/demo/rest-client.ts';
import { REPO_ROOT, runCli, tempDir } from '../helpers/cli.ts';
import { deferCleanup } from '../helpers/cleanup.ts';
import { openDashboardPage } from './dashboard-browser.ts';

test('the pilot demo promotes the ODF2NNA candidate, rolls the over-pruned one back, and the dashboard rolls the fleet back with one click', async (t) => {
  const browser = await openDashboardPage(t, 'accept');
  if (!browser) return;
  const { page, dialogs, policyViolations } = browser;
  const dataDir = await tempDir(t, 'fleetprune-demo-test-');
  const result = await runDemo({
    dataset: 'wine',
    devices: 8,
    dataDir,
    httpPort: 0,
    seed: 3,
    pruneOverrides: { units: 48, epochs: 60 },
    log: createLogger('demo', 'silent'),
    say: () => {},
  });
  deferCleanup(t, () => result.close()); // before its data directory is removed

  const [good, over] = result.rollouts;
  assert.equal(good?.outcome, 'promoted', `the ODF2NNA candidate: ${good?.reason}`);
  assert.equal(over?.outcome, 'rolled_back', `the over-pruned candidate: ${over?.reason}`);
  const api = new RestClient(result.dashboardUrl.split('/dashboard/')[0]!, result.adminToken);
  const { rollouts } = await api.get<{ rollouts: { id: string; candidateVersion: string; phase: string }[] }>('/rollouts');
  const promoted = rollouts.find((r) => r.candidateVersion === result.versions.good)!;
  assert.equal(promoted.phase, 'Completed');
  const activeVersions = async () => (await api.get<{ devices: DeviceView[] }>('/devices')).devices.map((d) => d.active?.version);
  assert.ok((await activeVersions()).every((v) => v === result.versions.good), 'after the demo every device runs the promoted candidate');

  await page.goto(result.dashboardUrl);
  await page.locator(`tr[data-rollout="${promoted.id}"]`).click();
  await page.locator('#rollout-phase', { hasText: 'Completed' }).waitFor();
  assert.equal(await page.locator('#fleet tr[data-device]').count(), 8, 'the fleet view lists every device');
  const lineage = `wine@${result.versions.general} → wine@${result.versions.good}`;
  assert.equal(await page.locator('#models td', { hasText: lineage }).count(), 1, `the models view shows the lineage ${lineage}`);

  await page.locator('button[data-action="rollback"]').click();
  assert.match(dialogs[0] ?? '', /Roll back every device/, 'the click asks for confirmation');
  await page.locator('#rollout-phase', { hasText: 'RolledBack' }).waitFor({ timeout: 30_000 });
  await waitFor('every device to run the baseline again', async () => ((await activeVersions()).every((v) => v === result.versions.general) ? true : undefined), 60_000);
  // The dashboard updates live, without a reload.
  await page.waitForFunction(
    (version) => Array.from(document.querySelectorAll("#fleet td.active-version")).every((cell) => cell.textContent?.endsWith(`@${version}`)),
    result.versions.general,
    { timeout: 30_000 },
  );
  const shots = join(REPO_ROOT, 'test-results');
  await mkdir(shots, { recursive: true });
  await page.screenshot({ path: join(shots, 'dashboard-after-rollback.png'), fullPage: true });
  assert.deepEqual(policyViolations, [], 'the dashboard (charts, live updates, the rollback) works within its Content-Security-Policy');
});

test('fleetprune demo: a bad --summary-json or --data-dir is refused before the demo runs, in one line, leaving nothing behind', async (t) => {
  const dir = await tempDir(t, 'fleetprune-demo-paths-');
  const aFile = join(dir, 'some-file');
  await writeFile(aFile, 'x\n');
  const aDir = join(dir, 'adir');
  await mkdir(aDir);
  // An earlier demo's data: rerunning into it would enroll the same device ids after minutes of training.
  const earlier = join(dir, 'earlier');
  await mkdir(join(earlier, 'server'), { recursive: true });
  // One a demo of now kept: its server runs again logged in with the demo's admin token, kept there.
  const kept = join(dir, "kept demo's");
  await mkdir(join(kept, 'server'), { recursive: true });
  await writeFile(join(kept, 'admin-token'), 'x\n', { mode: 0o600 });
  const notADemo = join(dir, 'docs');
  await mkdir(notADemo);
  await writeFile(join(notADemo, 'README.md'), '# notes\n');
  const demo = (...flags: string[]) =>
    runCli(['demo', '--dataset', 'iris', '--devices', '8', '--exit-when-done', ...flags], {}, { timeoutMs: 60_000 });

  const cases: [string[], string][] = [
    [['--data-dir', join(dir, 'dd1'), '--summary-json', aDir], `fleetprune: --summary-json: ${aDir} is a directory\n`],
    [['--data-dir', join(dir, 'dd2'), '--summary-json', join(dir, 'nowhere', 'summary.json')], `fleetprune: --summary-json: cannot write ${join(dir, 'nowhere', 'summary.json')} (no directory ${join(dir, 'nowhere')})\n`],
    [['--data-dir', aFile], `fleetprune: --data-dir: ${aFile} is not a directory\n`],
    // A directory that never held a demo: no server to run "again" (the command would start one inside it).
    [['--data-dir', notADemo], `fleetprune: --data-dir: ${notADemo} is not empty; a demo starts in an empty or new directory\n`],
    [['--data-dir', join(aFile, 'sub')], `fleetprune: --data-dir: cannot create ${join(aFile, 'sub')} (a parent is not a directory)\n`],
    [
      ['--data-dir', earlier, '--summary-json', join(earlier, 'summary.json')],
      `fleetprune: --data-dir: ${earlier} is not empty; a demo starts in an empty or new directory (an earlier demo's server runs again with: fleetprune server --data-dir ${join(earlier, 'server')} --mqtt-port 0)\n`,
    ],
    [
      ['--data-dir', kept],
      `fleetprune: --data-dir: ${kept} is not empty; a demo starts in an empty or new directory (an earlier demo's server runs again with: ` +
        `FLEETPRUNE_ADMIN_TOKEN="$(cat '${dir}/kept demo'\\''s/admin-token')" fleetprune server --data-dir '${dir}/kept demo'\\''s/server' --mqtt-port 0)\n`,
    ],
  ];
  for (const [flags, message] of cases) {
    const result = await demo(...flags);
    assert.equal(result.code, 2, `${flags.join(' ')}: ${result.stderr}`);
    assert.equal(result.stdout, '', 'the demo did not start');
    assert.equal(result.stderr, message);
  }
  assert.deepEqual((await readdir(dir)).sort(), ['adir', 'docs', 'earlier', "kept demo's", 'some-file'], 'no data directory or summary file is left behind');
  assert.deepEqual(await readdir(aDir), []);
  assert.deepEqual(await readdir(earlier), ['server'], 'the earlier demo\'s data is left as it was');
  assert.equal(await readFile(aFile, 'utf8'), 'x\n');
});

test('fleetprune demo --exit-when-done (npm start\'s command) on a regression set: decides both rollouts on MSE, prints an aligned summary, writes the summary JSON, and leaves no temporary directory', async (t) => {
  // The wine demo (a classifier) runs in the dashboard test above; this one takes the regression path.
  const tmp = await tempDir(t, 'fleetprune-demo-tmp-');
  const out = await tempDir(t, 'fleetprune-demo-out-');
  const summary = join(out, 'summary.json');
  const result = await runCli(['demo', '--dataset', 'diabetes', '--devices', '8', '--http-port', '0', '--exit-when-done', '--summary-json', summary], { TMPDIR: tmp }, { timeoutMs: 240_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^fleetprune demo: data in .* \(removed at exit; --data-dir DIR keeps it\)$/m);
  // The address and token of a server that has stopped by the time they are read are no use.
  assert.doesNotMatch(result.stdout, /^(dashboard|admin token): /m, 'no dashboard or token of a stopped server');
  const json = JSON.parse(await readFile(summary, 'utf8')) as { rollouts: { outcome: string; phase: string; reason: string }[] };
  assert.deepEqual(json.rollouts.map((rollout) => rollout.outcome), ['promoted', 'rolled_back']);
  assert.deepEqual(json.rollouts.map((rollout) => rollout.phase), ['Completed', 'Failed'], 'a failed analysis told from an operator\'s rollback');
  assert.match(json.rollouts[1]!.reason, /^analysis failed at step 2: mse: .*candidate mse \d+ label units² vs baseline \d+/);
  // In the words rollout status and models list use for it (Failed, failed), and what became of the devices.
  assert.match(result.stdout, /^ {2}diabetes@3 \(ε [\d.]+\): FAILED, ROLLED BACK: analysis failed at step 2: /m);
  assert.match(result.stdout, /^ {2}diabetes@2 \(ε [\d.]+\): PROMOTED: /m);
  // Decision times are the server's UTC (the dashboard shows local time): said once, above them.
  assert.match(result.stdout, /^Rollouts \(decision times in UTC\)\n {2}diabetes@\d/m);
  assert.match(result.stdout, /^ {4}\d{2}:\d{2}:\d{2} /m);
  // The model table: every row's columns start where the header's do.
  const lines = result.stdout.split('\n');
  const header = lines.find((line) => line.startsWith('  Models (diabetes)'))!;
  const rows = lines.slice(lines.indexOf(header) + 1, lines.indexOf(header) + 4);
  // (Text columns are aligned left, numbers right.)
  for (const column of ['version', 'layers']) {
    for (const row of rows) assert.notEqual(row[header.indexOf(column)], ' ', `column "${column}" of ${JSON.stringify(row)} starts under its header`);
  }
  for (const column of ['params', 'FLOPs/sample', 'test (server)', 'devices: mse', 'p95 ms']) {
    const end = header.indexOf(column) + column.length;
    for (const row of rows) assert.notEqual(row[end - 1], ' ', `column "${column}" of ${JSON.stringify(row)} ends under its header`);
  }
  // (tsx keeps its cache there; the demo's own directories are fleetprune-demo-*.)
  assert.deepEqual((await readdir(tmp)).filter((name) => name.startsWith('fleetprune-')), [], 'the temporary data directory (admin token, device credentials) is removed');
});
