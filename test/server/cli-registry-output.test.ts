import assert from 'node:assert/strict';
import { cp, readFile, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { collectBlobGarbage } from '../../server/artifacts/blob-garbage-collector.ts';
import { VersionStatusRepository } from '../../server/store/repositories/version-status-repository.ts';
import { RegistryModelStatus } from '../../server/rollout/registry-model-status.ts';
import { runCli } from './helpers/run-cli.ts';
import { runCliBatch, startCli, tempDir, type CliResult } from '../helpers/cli.ts';
import { makeArtifact } from './helpers/artifacts.ts';
import { SAMPLE_TRAINING } from '../artifact/fixtures.ts';
import type { TrainingRecord } from '../../shared/artifact/training-record.ts';
import { FAILED_STATUS, recordFailedVersion } from './helpers/failed-version.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/** A pruned artifact with its parent in DIR/general, as `fleetprune prune --out DIR` writes them. */
async function prunedWithGeneral(t: import('node:test').TestContext, privateKey: import('node:crypto').KeyObject, training?: TrainingRecord) {
  const general = await makeArtifact(t, { seed: 31, privateKey, units: 16 });
  const pruned = await makeArtifact(t, { seed: 32, privateKey, units: 4, parent: artifactId(general.manifest), training });
  await cp(general.dir, join(pruned.dir, 'general'), { recursive: true });
  return { general, pruned };
}

test('models push DIR registers the parent in DIR/general first, so latest is the pruned model; pushing the parent again is a no-op', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const { general, pruned } = await prunedWithGeneral(t, key);

  const pushed = await runCli(['models', 'push', pruned.dir, ...connection]);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.equal(
    pushed.stdout,
    `registered iris@1 (artifact ${artifactId(general.manifest)}; the parent, from ${join(pruned.dir, 'general')})\n` +
      `registered iris@2 (artifact ${artifactId(pruned.manifest)})\n`,
  );
  const latest = (await (await server.request('GET', '/api/models/iris/versions/latest')).json()) as { artifactId: string; lineage: { parent: unknown } };
  assert.equal(latest.artifactId, artifactId(pruned.manifest), 'latest is the pruned model');
  assert.deepEqual(latest.lineage.parent, { model: 'iris', version: '1' });

  // The README order (pruned, then general): the general one is already there, nothing changes.
  const again = await runCli(['models', 'push', general.dir, ...connection]);
  assert.equal(again.code, 2);
  assert.equal(again.stderr, `fleetprune: artifact ${artifactId(general.manifest)} is already registered as iris@1\n`);
  assert.equal(((await (await server.request('GET', '/api/models/iris')).json()) as { versionCount: number }).versionCount, 2);
});

test('models push DIR of a pruned artifact whose parent is registered already pushes the pruned one alone', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const { general, pruned } = await prunedWithGeneral(t, key);
  // A general/ without its manifest: verify fails it, and push said nothing and pushed the child alone.
  const damaged = join(await tempDir(t), 'damaged');
  await cp(pruned.dir, damaged, { recursive: true });
  await rm(join(damaged, 'general', 'manifest.json'));
  const refused = await runCli(['models', 'push', damaged, ...connection]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.equal(refused.stderr, `fleetprune: cannot push ${join(damaged, 'general')} (the parent of ${damaged}): general/manifest.json is missing (remove general/ to push the artifact alone)\n`);
  // Another artifact in general/: verify fails it, and push pushed the child alone without a word.
  const stranger = await makeArtifact(t, { seed: 37, privateKey: key, units: 4 });
  const swapped = join(await tempDir(t), 'swapped');
  await cp(pruned.dir, swapped, { recursive: true });
  await rm(join(swapped, 'general'), { recursive: true });
  await cp(stranger.dir, join(swapped, 'general'), { recursive: true });
  const mismatched = await runCli(['models', 'push', swapped, ...connection]);
  assert.equal(mismatched.code, 2, mismatched.stderr);
  assert.equal(
    mismatched.stderr,
    `fleetprune: cannot push ${join(swapped, 'general')} (the parent of ${swapped}): it holds artifact ${artifactId(stranger.manifest).slice(0, 12)}…, not this artifact's parent (${artifactId(general.manifest).slice(0, 12)}…; remove general/ to push the artifact alone)\n`,
  );
  assert.equal((await server.request('GET', '/api/models/iris')).status, 404, 'nothing registered');
  assert.equal((await runCli(['models', 'push', general.dir, ...connection])).code, 0);
  const pushed = await runCli(['models', 'push', pruned.dir, ...connection]);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.equal(pushed.stdout, `registered iris@2 (artifact ${artifactId(pruned.manifest)})\n`);
  assert.equal(pushed.stderr, `the parent in ${join(pruned.dir, 'general')} is already registered as iris@1\n`);
});

test('models push DIR of a pruned model registered without its parent says the parent stays unregistered and why; pushing the parent alone warns that it is `latest` now', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const { general, pruned } = await prunedWithGeneral(t, key);
  // The pruned artifact copied out alone, and pushed first.
  const alone = join(await tempDir(t), 'alone');
  await cp(pruned.dir, alone, { recursive: true });
  await rm(join(alone, 'general'), { recursive: true });
  const first = await runCli(['models', 'push', alone, ...connection]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(
    first.stderr,
    `fleetprune: note: its parent (artifact ${artifactId(general.manifest).slice(0, 12)}…) is not registered: its lineage shows it as not registered until it is; pushing it later (its prune output's general/) makes that model \`latest\` of iris\n`,
  );

  const again = await runCli(['models', 'push', pruned.dir, ...connection]);
  assert.equal(again.code, 2);
  const generalDir = join(pruned.dir, 'general');
  assert.equal(
    again.stderr,
    `fleetprune: artifact ${artifactId(pruned.manifest)} is already registered as iris@1; its parent in ${generalDir} is not registered, and this push leaves it so ` +
      `(registered now, it would be the newer version, and \`latest\` the general model); \`fleetprune models push ${generalDir}\` registers it all the same\n`,
  );
  assert.equal(((await (await server.request('GET', '/api/models/iris')).json()) as { versionCount: number }).versionCount, 1, 'nothing registered');

  const parent = await runCli(['models', 'push', generalDir, ...connection]);
  assert.equal(parent.code, 0, parent.stderr);
  assert.equal(parent.stdout, `registered iris@2 (artifact ${artifactId(general.manifest)})\n`);
  assert.equal(
    parent.stderr,
    'fleetprune: warning: iris@1, pruned from this artifact, was registered before it: `latest` of iris is now iris@2, the model it was pruned from (assign by version, or by the candidate or production alias)\n',
  );
  // An artifact no registered version was pruned from is pushed without a word.
  const other = await makeArtifact(t, { seed: 33, privateKey: key, units: 5 });
  const plain = await runCli(['models', 'push', other.dir, ...connection]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stderr, '');
});

test('models push DIR of a model pruned from another model pushes its parent under the parent\'s own name: registered there already, the child alone is registered', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const general = await makeArtifact(t, { seed: 41, privateKey: key, units: 16 });
  const pruned = await makeArtifact(t, { seed: 42, privateKey: key, units: 4, parent: artifactId(general.manifest), name: 'flower2' });
  await cp(general.dir, join(pruned.dir, 'general'), { recursive: true });

  // Not registered yet: the parent goes in as iris (the model its manifest names), the child as flower2.
  const first = await runCli(['models', 'push', pruned.dir, ...connection]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(
    first.stdout,
    `registered iris@1 (artifact ${artifactId(general.manifest)}; the parent, from ${join(pruned.dir, 'general')})\n` +
      `registered flower2@1 (artifact ${artifactId(pruned.manifest)})\n`,
  );
  const child = (await (await server.request('GET', '/api/models/flower2/versions/1')).json()) as { lineage: { parent: unknown } };
  assert.deepEqual(child.lineage.parent, { model: 'iris', version: '1' });

  // Registered already, as iris@1: a second child of it is pushed alone, not refused as misnamed.
  const sibling = await makeArtifact(t, { seed: 43, privateKey: key, units: 5, parent: artifactId(general.manifest), name: 'flower3' });
  await cp(general.dir, join(sibling.dir, 'general'), { recursive: true });
  const second = await runCli(['models', 'push', sibling.dir, ...connection]);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stdout, `registered flower3@1 (artifact ${artifactId(sibling.manifest)})\n`);
  assert.equal(second.stderr, `the parent in ${join(sibling.dir, 'general')} is already registered as iris@1\n`);
  assert.equal(((await (await server.request('GET', '/api/models/iris')).json()) as { versionCount: number }).versionCount, 1);
});

/**
 * Holds the server's next blob upload whose hash `matches` until `release()`: `held` resolves once
 * one is held. The upload itself then goes on through the real blob store.
 */
function holdUpload(server: NonNullable<Awaited<ReturnType<typeof startTestServer>>>, matches: (sha256: string | null) => boolean) {
  const blobs = server.server.ctx.blobs;
  const put = blobs.put.bind(blobs);
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let markHeld!: () => void;
  const held = new Promise<void>((resolve) => (markHeld = resolve));
  let holding = true;
  blobs.put = async (...args: Parameters<typeof put>) => {
    if (holding && matches(args[1])) {
      holding = false;
      markHeld();
      await released;
    }
    return put(...args);
  };
  return { held, release };
}

test('models push DIR whose parent another push registers meanwhile takes the parent as registered and registers the pruned model', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const { general, pruned } = await prunedWithGeneral(t, key);
  // This push is held at its parent's first upload, after its check found the parent unregistered...
  const upload = holdUpload(server, () => true);
  const racing = startCli(t, ['models', 'push', pruned.dir, ...connection]);
  await upload.held;
  // ...while another push registers the parent.
  const other = await runCli(['models', 'push', general.dir, ...connection]);
  assert.equal(other.code, 0, other.stderr);
  upload.release();
  const [code] = await racing.exited;
  // It failed with "artifact <the parent's id> is already registered as iris@1", as if it were the pruned model.
  assert.equal(code, 0, racing.output.stderr);
  assert.equal(racing.output.stderr, `the parent in ${join(pruned.dir, 'general')} is already registered as iris@1\n`);
  assert.equal(racing.output.stdout, `registered iris@2 (artifact ${artifactId(pruned.manifest)})\n`);
  const latest = (await (await server.request('GET', '/api/models/iris/versions/latest')).json()) as { artifactId: string };
  assert.equal(latest.artifactId, artifactId(pruned.manifest), 'latest is the pruned model');
});

test('models push DIR stopped by Ctrl-C after its parent registered says so and how to finish; an upload error of the parent names the parent', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const { general, pruned } = await prunedWithGeneral(t, key);
  const parentFiles = new Set(Object.values(general.manifest.files).map((file) => file.sha256));

  // A failed upload of the parent's file: named as the parent's, not as DIR's own model.onnx.
  const blobs = server.server.ctx.blobs;
  const put = blobs.put.bind(blobs);
  blobs.put = async () => {
    throw new Error('disk on fire');
  };
  const failed = await runCli(['models', 'push', pruned.dir, ...connection]);
  blobs.put = put;
  assert.equal(failed.code, 1, failed.stderr);
  assert.match(failed.stderr, new RegExp(`^fleetprune: pushing the parent in ${join(pruned.dir, 'general').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: uploading \\S+: `));

  // Held at the pruned model's own file: the parent is registered by then.
  const upload = holdUpload(server, (sha256) => sha256 !== null && !parentFiles.has(sha256));
  const push = startCli(t, ['models', 'push', pruned.dir, ...connection]);
  await upload.held;
  push.child.kill('SIGINT');
  const [code] = await push.exited;
  upload.release();
  assert.equal(code, 130);
  assert.equal(
    push.output.stderr,
    `fleetprune: interrupted (SIGINT): the parent is registered as iris@1, ${pruned.dir} is not (\`latest\` is the general model until it is); \`fleetprune models push ${pruned.dir}\` again registers it\n`,
  );
  const again = await runCli(['models', 'push', pruned.dir, ...connection]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, `registered iris@2 (artifact ${artifactId(pruned.manifest)})\n`);
});

test('a version whose parent is not registered shows the parent sha256 as not registered, not "-" (no parent); once registered, by name', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const general = await makeArtifact(t, { seed: 35, privateKey: key, units: 8, name: 'other' });
  const pruned = await makeArtifact(t, { seed: 36, privateKey: key, units: 4, parent: artifactId(general.manifest) });
  const parentId = artifactId(general.manifest);
  const listAndShow = async () =>
    (await runCliBatch([['models', 'list', 'iris'], ['models', 'show', 'iris@1']].map((args) => ({ args: [...args, ...connection] })))) as [CliResult, CliResult];

  // Pushed without DIR/general: the registry has no parent to name.
  assert.equal((await runCli(['models', 'push', pruned.dir, ...connection])).code, 0);
  let [list, show] = await listAndShow();
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^VERSION +ARTIFACT +PARENT +ALIASES +CREATED +STATUS$/m);
  assert.match(list.stdout, new RegExp(`^iris@1 +\\S+ +${parentId.slice(0, 12)}… \\(not registered\\) `, 'm'));
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, new RegExp(`^parent {5}${parentId} \\(not registered\\)$`, 'm'));

  // The parent pushed later, as another model: now it is named.
  assert.equal((await runCli(['models', 'push', general.dir, ...connection])).code, 0);
  [list, show] = await listAndShow();
  assert.match(list.stdout, /^iris@1 +\S+ +other@1 /m);
  assert.match(show.stdout, /^parent {5}other@1$/m);
});

test('models show prints a manifest\'s own text escaped: a line break or an escape sequence in it adds no line and reaches no terminal', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const forged = await makeArtifact(t, { seed: 38, privateKey: key, dataFingerprint: 'abc\u001b[2J\nstatus     production' });
  // Such a fingerprint is refused at registration now, quoted escaped on one line…
  const refused = await runCli(['models', 'push', forged.dir, ...connection]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /^fleetprune: .*manifest\.lineage\.dataFingerprint: must be 64 lowercase hex digits \(the SHA-256 prune computes of the data\), not "abc\\u001b\[2J\\nstatus {5}production"\n$/);
  assert.doesNotMatch(refused.stderr, /\u001b/);
  // …and one a server registered before that (stored as it was) is shown escaped.
  const store = server.server.ctx.store;
  const at = new Date().toISOString();
  await store.models.ensureModel('iris', at, 'test');
  await store.models.insertVersion({
    model: 'iris', version: '1', seq: 1, artifactId: artifactId(forged.manifest), manifest: forged.manifest, parentArtifactId: null, epsilon: null,
    dataFingerprint: forged.manifest.lineage.dataFingerprint, metrics: forged.manifest.metrics, createdAt: at, createdBy: 'test',
  });
  const show = await runCli(['models', 'show', 'iris@1', ...connection]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /^data {7}abc\\x1b\[2J\\nstatus {5}production$/m);
  assert.doesNotMatch(show.stdout, /\u001b/);
  assert.deepEqual(show.stdout.split('\n').filter((line) => line.startsWith('status')), ['status     -']);
});

test('--json prints the REST shapes (numbers as numbers, no *_json or _epsilon fields); a version shows its rollout status and what trained it', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  // Only the pruned one has a training.json: the general one stands for an artifact written before it existed.
  const { pruned } = await prunedWithGeneral(t, key, SAMPLE_TRAINING);
  assert.equal((await runCli(['models', 'push', pruned.dir, ...connection])).code, 0);
  // What a rollout records when it fails the candidate.
  await recordFailedVersion(server.server.ctx.store.engine, 'iris', '2');
  const status = { ...FAILED_STATUS };

  // REST: the version views carry the status (null before any rollout gave one).
  const rest = (await (await server.request('GET', '/api/models/iris/versions/2')).json()) as Record<string, unknown>;
  assert.deepEqual(rest.status, status);
  const restList = (await (await server.request('GET', '/api/models/iris/versions')).json()) as { versions: { status: unknown }[] };
  assert.deepEqual(restList.versions.map((v) => v.status), [null, status]);
  // One version's view carries its training.json, read from the stored blob; the list does not.
  assert.deepEqual(rest.training, SAMPLE_TRAINING);
  assert.equal(((await (await server.request('GET', '/api/models/iris/versions/1')).json()) as { training: unknown }).training, null);
  assert.ok(restList.versions.every((v) => !('training' in v)));
  // A damaged stored copy is set aside (and counted) as a download would, not passed off as none.
  const trainingSha = pruned.manifest.files['training.json']!.sha256;
  const original = await readFile(server.server.ctx.blobs.pathOf(trainingSha));
  await writeFile(server.server.ctx.blobs.pathOf(trainingSha), 'garbage');
  assert.equal(((await (await server.request('GET', '/api/models/iris/versions/2')).json()) as { training: unknown }).training, null);
  assert.equal(await server.server.ctx.blobs.hasDamagedCopy(trainingSha), true, 'set aside');
  assert.match(await (await server.request('GET', '/metrics')).text(), /^fleetprune_blobs_damaged_total 1$/m);
  await writeFile(server.server.ctx.blobs.pathOf(trainingSha), original);
  // ε's mode beside ε, as the manifest gives it (null with ε for a model not pruned).
  assert.deepEqual((rest.lineage as { epsilon: unknown; epsilonMode: unknown }).epsilonMode, pruned.manifest.lineage.epsilonMode);
  assert.deepEqual((restList.versions as unknown as { lineage: { epsilon: unknown; epsilonMode: unknown } }[]).map((v) => [v.lineage.epsilon, v.lineage.epsilonMode]), [[null, null], [pruned.manifest.lineage.epsilon, 'relative']]);

  // Read-only commands: one process runs them all (runCliBatch).
  const [show, list, listJson, modelsJson, table, gc, tokens] = (await runCliBatch([
    ['models', 'show', 'iris@2', '--json'],
    ['models', 'list', 'iris'],
    ['models', 'list', 'iris', '--json'],
    ['models', 'list', '--json'],
    ['models', 'show', 'iris@2'],
    ['blobs', 'gc', '--dry-run', '--json'],
    ['tokens', 'list', '--json'],
  ].map((args) => ({ args: [...args, ...connection] })))) as [CliResult, CliResult, CliResult, CliResult, CliResult, CliResult, CliResult];
  for (const run of [show, list, listJson, modelsJson, table, gc, tokens]) assert.equal(run.code, 0, run.stderr);

  // models show --json is GET /api/models/:name/versions/:ref, field for field.
  assert.deepEqual(JSON.parse(show.stdout), rest);
  assert.deepEqual(JSON.parse(listJson.stdout), restList);
  assert.deepEqual(JSON.parse(modelsJson.stdout), await (await server.request('GET', '/api/models')).json());
  assert.doesNotMatch(show.stdout, /_json|"_epsilon"/);

  // The status: a column of models list NAME, a line of models show.
  const lines = list.stdout.trimEnd().split('\n').slice(1);
  assert.match(lines[0]!, /^iris@1 .* -$/);
  assert.match(lines[1]!, /^iris@2 .* failed$/);
  assert.match(table.stdout, /^status {5}failed: analysis failed at step 2: accuracy below 0\.8 \(2026-03-01T09:00:00\.000Z\)$/m);
  // The scores, read as the prune report gives them, not as raw JSON.
  const scores = pruned.manifest.metrics;
  const percent = (share: number | undefined) => `${(share! * 100).toFixed(2)}%`;
  const expected = `test accuracy ${percent(scores.test.accuracy)}${scores.validation ? ` · validation accuracy ${percent(scores.validation.accuracy)}` : ''}`;
  assert.ok(table.stdout.includes(`\nmetrics    ${expected}\n`), table.stdout);
  // The size the pruning bought, and the ε with its mode, as the manifest gives them.
  const { architecture, lineage } = pruned.manifest;
  assert.match(table.stdout, new RegExp(`^epsilon {4}${lineage.epsilon} \\(${lineage.epsilonMode}\\)$`, 'm'));
  // How it was made, and which key signed it (a key rotated out of --trusted-key leaves its versions to find).
  assert.match(table.stdout, new RegExp(`^method {5}${lineage.method}${lineage.seed === null ? '' : ` \\(seed ${lineage.seed}\\)`}$`, 'm'));
  assert.match(table.stdout, new RegExp(`^signed by  key ${pruned.manifest.signature!.keyId}$`, 'm'));
  assert.match(table.stdout, /^trained    fleetprune 0\.1\.0 on wasm: layers 1, units 8, epochs 20, batchSize 16, epsilons 0\.1, fullSweep false$/m);
  assert.ok(
    table.stdout.includes(`\nsize       ${architecture.layers.join('-')} on ${architecture.inputs} inputs: ${architecture.params} params, ${architecture.flopsPerSample} FLOPs/sample\n`),
    table.stdout,
  );

  // blobs gc --json is POST /api/blobs/gc: counts are numbers.
  const collected = JSON.parse(gc.stdout);
  const restGc = await (await server.request('POST', '/api/blobs/gc', { json: { dryRun: true } })).json();
  assert.deepEqual(Object.keys(collected).sort(), Object.keys(restGc as object).sort());
  assert.equal(typeof collected.scanned, 'number');
  assert.equal(typeof collected.freedBytes, 'number');
  assert.equal(collected.scanned, (restGc as { scanned: number }).scanned);

  // tokens list --json: the tokens of GET /api/tokens.
  assert.deepEqual(JSON.parse(tokens.stdout), ((await (await server.request('GET', '/api/tokens')).json()) as { tokens: unknown[] }).tokens);
});

test('models list NAME shows the version a later promotion or alias move replaced as superseded, not a second production', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const { pruned } = await prunedWithGeneral(t, key);
  assert.equal((await runCli(['models', 'push', pruned.dir, ...connection])).code, 0);
  const listAndShow = async () => {
    const [list, show1, show2] = (await runCliBatch([['models', 'list', 'iris'], ['models', 'show', 'iris@1'], ['models', 'show', 'iris@2']].map((args) => ({ args: [...args, ...connection] })))) as [CliResult, CliResult, CliResult];
    for (const run of [list, show1, show2]) assert.equal(run.code, 0, run.stderr);
    return { lines: list.stdout.trimEnd().split('\n').slice(1), show1: show1.stdout, show2: show2.stdout };
  };

  // Rollout A made iris@1 production, rollout B then iris@2 (what their completions record).
  const models = new RegistryModelStatus(server.server.ctx.store);
  await models.setVersionStatus({ commandId: 'ro-a-a5', model: 'iris', version: '1', status: 'production', reason: 'promoted to 100% of 2 devices' });
  await models.setVersionStatus({ commandId: 'ro-b-a5', model: 'iris', version: '2', status: 'production', reason: 'promoted to 100% of 2 devices' });
  let { lines, show1 } = await listAndShow();
  assert.match(lines[0]!, /^iris@1 .* - +\S+ +superseded$/);
  assert.match(lines[1]!, /^iris@2 .* production +\S+ +production$/);
  assert.match(show1, /^status {5}superseded: superseded by iris@2 \(\S+\)$/m);
  const rest = (await (await server.request('GET', '/api/models/iris/versions')).json()) as { versions: { status: { status: string; reason: string } | null }[] };
  assert.deepEqual(rest.versions.map((v) => [v.status?.status, v.status?.reason]), [['superseded', 'superseded by iris@2'], ['production', 'promoted to 100% of 2 devices']]);

  // An operator moves the production alias back by hand: the same, the other way round.
  const moved = await runCli(['models', 'alias', 'iris@1', 'production', ...connection]);
  assert.equal(moved.code, 0, moved.stderr);
  let show2: string;
  ({ lines, show1, show2 } = await listAndShow());
  assert.match(lines[0]!, /^iris@1 .* production +\S+ +production$/);
  assert.match(lines[1]!, /^iris@2 .* - +\S+ +superseded$/);
  assert.match(show1, /^status {5}production: production alias set by token:\S+ \(\S+\)$/m);
  assert.match(show2, /^status {5}superseded: superseded by iris@1 \(\S+\)$/m);

  // The operator clears the production alias: no version is production any more.
  assert.equal((await server.request('DELETE', '/api/models/iris/aliases/production')).status, 204);
  ({ lines, show1, show2 } = await listAndShow());
  assert.match(lines[0]!, /^iris@1 .* - +\S+ +withdrawn$/);
  assert.match(lines[1]!, /^iris@2 .* - +\S+ +superseded$/);
  assert.match(show1, /^status {5}withdrawn: production alias cleared by token:env-admin \(\S+\)$/m);
  assert.equal(await new VersionStatusRepository(server.server.ctx.store.engine).productionVersions('iris').then((versions) => versions.length), 0);
  const audit = (await (await server.request('GET', '/api/audit')).json()) as { entries: { action: string; target: string; details: { status?: string } }[] };
  assert.deepEqual(audit.entries.slice(0, 2).map((entry) => [entry.action, entry.target, entry.details.status ?? null]), [['version.status', 'iris@1', 'withdrawn'], ['alias.clear', 'iris:production', null]]);
});

test('models push of an artifact with a file over --max-blob-bytes is refused before anything is sent: no parent registered, no file stored', async (t) => {
  const probe = await makeArtifact(t, { seed: 41, units: 4 });
  // The general model's files fit; the pruned one (wider here) lists a larger file.
  const maxBlobBytes = Math.max(...Object.values(probe.manifest.files).map((file) => file.bytes));
  const server = (await startTestServer(t, { config: { maxBlobBytes } }))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const general = await makeArtifact(t, { seed: 41, privateKey: key, units: 4 });
  const pruned = await makeArtifact(t, { seed: 42, privateKey: key, units: 64, parent: artifactId(general.manifest) });
  await cp(general.dir, join(pruned.dir, 'general'), { recursive: true });
  const [path, file] = Object.entries(pruned.manifest.files).find(([, entry]) => entry.bytes > maxBlobBytes)!;

  const pushed = await runCli(['models', 'push', pruned.dir, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(pushed.code, 2, pushed.stderr);
  assert.equal(pushed.stderr, `fleetprune: manifest.files.${path}: ${file.bytes} bytes exceed the upload limit of ${maxBlobBytes} bytes (--max-blob-bytes)\n`);
  assert.equal(pushed.stdout, '', 'nothing registered');
  assert.equal(await server.server.ctx.store.models.countVersions(), 0);
  assert.deepEqual(await server.server.ctx.blobs.list(), [], 'no file uploaded');
  const check = await server.request('POST', '/api/models/iris/versions/check', { json: { manifest: pruned.manifest } });
  assert.equal(check.status, 413);
});

test('models push sends again a file that blob GC collected while later files were uploading, and registers', async (t) => {
  const server = (await startTestServer(t))!;
  const { blobs, store } = server.server.ctx;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const { dir, manifest } = await makeArtifact(t, { seed: 51, privateKey: key });
  // When the push starts uploading its second file, the first one has (as after a long upload)
  // been idle past the --min-age of a `blobs gc` that runs right then.
  const put = blobs.put.bind(blobs);
  let uploads = 0;
  let collected: string[] = [];
  blobs.put = async (source, sha256, maxBytes, whileLocked) => {
    if (++uploads === 2) {
      const long = new Date(Date.now() - 2 * 3600_000);
      for (const stored of await blobs.list()) await utimes(blobs.pathOf(stored), long, long);
      collected = (await collectBlobGarbage({ store, blobs }, { dryRun: false, minAgeSeconds: 60, actor: 'test' })).removed.map((blob) => blob.sha256);
    }
    return put(source, sha256, maxBytes, whileLocked);
  };

  const pushed = await runCli(['models', 'push', dir, '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(collected.length, 1, 'the first uploaded file was collected mid-push');
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.equal(pushed.stdout, `registered iris@1 (artifact ${artifactId(manifest)})\n`);
  for (const file of Object.values(manifest.files)) assert.ok(await blobs.stat(file.sha256), `${file.sha256} is stored`);
});

test('models unalias clears an alias; models retire and unretire a version (said, when it already was, as no change); retiring one that holds an alias is refused, naming it', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const artifact = await makeArtifact(t, { seed: 61, privateKey: key });
  assert.equal((await runCli(['models', 'push', artifact.dir, ...connection])).code, 0);
  assert.equal((await runCli(['models', 'alias', 'iris@1', 'candidate', ...connection])).code, 0);

  const [held, cleared, retired, retiredAgain, listed, unretired, unretiredAgain] = await (async () => {
    const results: CliResult[] = [];
    for (const args of [['models', 'retire', 'iris@1'], ['models', 'unalias', 'iris', 'candidate'], ['models', 'retire', 'iris@1'], ['models', 'retire', 'iris@1'], ['models', 'list', 'iris'], ['models', 'unretire', 'iris@1'], ['models', 'unretire', 'iris@1']]) {
      results.push(await runCli([...args, ...connection]));
    }
    return results;
  })();
  assert.equal(held!.code, 2);
  assert.match(held!.stderr, /^fleetprune: .*candidate/);
  assert.deepEqual([cleared!.code, cleared!.stdout], [0, 'iris:candidate cleared\n']);
  assert.deepEqual([retired!.code, retired!.stdout], [0, 'iris@1 retired\n']);
  // Retired shows in the status column; the aliases column holds aliases only.
  assert.match(listed!.stdout, /^iris@1 +\S+ +- +- +\S+ +retired$/m);
  assert.deepEqual([unretired!.code, unretired!.stdout], [0, 'iris@1 unretired: assignable again\n']);
  // Asked again, nothing changes, and it says so rather than report a change.
  assert.deepEqual([retiredAgain!.code, retiredAgain!.stdout], [0, 'iris@1 was retired already; nothing changed\n']);
  assert.deepEqual([unretiredAgain!.code, unretiredAgain!.stdout], [0, 'iris@1 was not retired: assignable already; nothing changed\n']);
  const aliases = (await (await server.request('GET', '/api/models/iris/versions/1')).json()) as { aliases: string[]; retired: boolean };
  assert.deepEqual([aliases.aliases, aliases.retired], [[], false]);
  // An alias or latest where only a version goes is named as such, set or not (no version has those names).
  for (const ref of ['candidate', 'latest']) {
    const refused = await runCli(['models', 'retire', `iris@${ref}`, ...connection]);
    assert.equal(refused.code, 2);
    assert.equal(refused.stderr, `fleetprune: command-argument value 'iris@${ref}' is invalid for argument 'ref'. expected NAME@VERSION: "${ref}" ${ref === 'latest' ? 'names the newest version' : 'is an alias'}, not a version (\`fleetprune models show iris@${ref}\` says which version it is) (run with --help for usage)\n`);
  }
});

test('models push DIR of a registered pruned artifact restores the files the server lost of its parent in DIR/general too; with nothing lost it is refused as registered', async (t) => {
  const server = (await startTestServer(t))!;
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const { general, pruned } = await prunedWithGeneral(t, key);
  assert.equal((await runCli(['models', 'push', pruned.dir, ...connection])).code, 0);
  const { sha256 } = general.manifest.files['model.onnx']!;
  const stored = join(server.dataDir, 'blobs', sha256.slice(0, 2), sha256);
  await truncate(stored, 100);

  const repaired = await runCli(['models', 'push', pruned.dir, ...connection]);
  assert.equal(repaired.code, 0, repaired.stderr);
  assert.equal(repaired.stdout, `the parent iris@1 is registered already (artifact ${artifactId(general.manifest)}, from ${join(pruned.dir, 'general')}); uploaded again the file the server had lost (model.onnx)\n`);
  assert.deepEqual(await readFile(stored), await readFile(join(general.dir, 'model.onnx')));
  const again = await runCli(['models', 'push', pruned.dir, ...connection]);
  assert.equal(again.code, 2);
  assert.equal(again.stderr, `fleetprune: artifact ${artifactId(pruned.manifest)} is already registered as iris@2\n`);
});
