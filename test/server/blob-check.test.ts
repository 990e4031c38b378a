import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactId, ONNX_FILE, type Manifest } from '../../shared/artifact/manifest.ts';
import { TRAINING_FILE } from '../../shared/artifact/training-record.ts';
import { DevicesRepository } from '../../server/store/repositories/devices-repository.ts';
import { isOneLineError, runCliBatch, type CliResult } from '../helpers/cli.ts';
import { makeArtifact, makeSigner, pushArtifact, storeSnapshot } from './helpers/artifacts.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';
import { BlobStore } from '../../server/artifacts/blob-store.ts';
import { checkBlobs } from '../../server/artifacts/blob-check.ts';

const TRAINING = { tool: { name: 'fleetprune', version: '0.1.0' }, backend: 'wasm', options: { layers: 1, units: 8 } };

/** A file of a version other than model.onnx and training.json (a tfjs file: devices never download it). */
function otherFile(manifest: Manifest): [string, { sha256: string; bytes: number }] {
  return Object.entries(manifest.files).find(([name]) => name !== ONNX_FILE && name !== TRAINING_FILE)!;
}

test('blobs check: a sound store passes; a missing and a damaged file are named with the versions and devices that hold them, a damaged copy is moved aside (not in a dry run), and a push restores both', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const first = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey, training: TRAINING });
  const second = await makeArtifact(t, { seed: 2, privateKey: signer.privateKey });
  assert.equal((await pushArtifact(server, 'iris', first.dir, first.manifest)).status, 201);
  assert.equal((await pushArtifact(server, 'iris', second.dir, second.manifest)).status, 201);
  assert.equal((await server.request('PUT', '/api/models/iris/aliases/production', { json: { version: '1' } })).status, 200);
  // Two devices: one runs iris@2 with iris@1 to roll back to, one runs iris@1.
  const devices = new DevicesRepository(server.server.ctx.store.engine);
  const ref = (version: string, manifest: Manifest) => ({ model: 'iris', version, sha256: artifactId(manifest) });
  for (const [id, slots] of [
    ['dev-a', { active: ref('2', second.manifest), candidate: null, previous: ref('1', first.manifest) }],
    ['dev-b', { active: ref('1', first.manifest), candidate: null, previous: null }],
  ] as const) {
    await devices.insert({ id, labels: {}, secretHash: 'x', tokenId: `token-${id}`, enrolledAt: new Date().toISOString(), enrolledBy: 'test' });
    await devices.setSlots(id, slots, new Date().toISOString());
  }
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const files = new Set([...Object.values(first.manifest.files), ...Object.values(second.manifest.files)].map((file) => file.sha256));

  // gRPC: progress (the last with every file done), then the result.
  const events = await grpcClient(server.grpcAddress, 'Blobs', ADMIN_TOKEN).stream('CheckBlobs', {});
  const totalBytes = [...new Map([...Object.values(first.manifest.files), ...Object.values(second.manifest.files)].map((file) => [file.sha256, file.bytes])).values()].reduce((a, b) => a + b, 0);
  assert.deepEqual(events.at(-2), { event: 'progress', progress: { blobs: String(files.size), total_blobs: String(files.size), bytes: String(totalBytes), total_bytes: String(totalBytes) } });
  assert.equal(events.at(-1).event, 'result');
  assert.equal(events.at(-1).result.sound, String(files.size));

  const [clean] = (await runCliBatch([{ args: ['blobs', 'check', ...connection] }])) as [CliResult];
  assert.equal(clean.code, 0, clean.stderr);
  assert.equal(clean.stdout, '');
  assert.match(clean.stderr, new RegExp(`^checked ${files.size} files \\(.+\\) of 2 versions: ${files.size} sound, 0 missing, 0 damaged\\n$`));

  // iris@1's model.onnx changed in place (same size), iris@2's other file gone.
  const { blobs } = server.server.ctx;
  const damaged = first.manifest.files[ONNX_FILE]!;
  const bytes = await readFile(blobs.pathOf(damaged.sha256));
  bytes[bytes.length >> 1]! ^= 0xff;
  await writeFile(blobs.pathOf(damaged.sha256), bytes);
  const [lostName, lost] = otherFile(second.manifest);
  await rm(blobs.pathOf(lost.sha256));
  // And iris@1's training.json: models show says the record was not sent, rather than nothing.
  const training = first.manifest.files[TRAINING_FILE]!;
  await rm(blobs.pathOf(training.sha256));

  const before = await storeSnapshot(server);
  const [dry, shown] = (await runCliBatch([{ args: ['blobs', 'check', '--dry-run', '--json', ...connection] }, { args: ['models', 'show', 'iris@1', ...connection] }])) as [CliResult, CliResult];
  assert.equal(dry.code, 1, dry.stderr);
  // Under --json, stderr is the one line of the refusal (the counts are in the JSON).
  assert.ok(isOneLineError(dry.stderr), dry.stderr);
  assert.match(dry.stderr, /^fleetprune: 3 registered files to restore: 3 missing or damaged: `fleetprune models push DIR` of the artifacts that list them uploads them again\n$/);
  const report = JSON.parse(dry.stdout);
  assert.equal(report.dryRun, true);
  assert.equal(report.versions, 2);
  assert.equal(report.sound, files.size - 3);
  assert.deepEqual(
    report.problems.map((problem: { problem: string; sha256: string }) => [problem.problem, problem.sha256]),
    [['missing', lost.sha256], ['missing', training.sha256], ['damaged', damaged.sha256]].sort((a, b) => (a[0] === b[0] ? (a[1]! < b[1]! ? -1 : 1) : a[0] === 'missing' ? -1 : 1)),
  );
  const problemOf = (sha256: string) => report.problems.find((problem: { sha256: string }) => problem.sha256 === sha256);
  assert.deepEqual(problemOf(lost.sha256).versions, [{ model: 'iris', version: '2', file: lostName, aliases: [], retired: false }]);
  assert.deepEqual(problemOf(lost.sha256).devices, { active: 1, candidate: 0, previous: 0 });
  assert.deepEqual(problemOf(damaged.sha256).versions, [{ model: 'iris', version: '1', file: ONNX_FILE, aliases: ['production'], retired: false }]);
  // A rollback target counts: dev-a would go back to iris@1.
  assert.deepEqual(problemOf(damaged.sha256).devices, { active: 1, candidate: 0, previous: 1 });
  assert.equal(problemOf(damaged.sha256).setAside, null);
  assert.match(problemOf(damaged.sha256).detail, /^its bytes hash to [0-9a-f]{64}: left in place \(dry run\)/);
  assert.match(problemOf(lost.sha256).detail, /^not stored \(a data dir restored without its blobs\/, or a file removed by hand\)/);
  assert.equal(await storeSnapshot(server), before, 'a dry run changed the store');
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^trained {4}not known: the server sent no training record, though the artifact lists a training\.json/m);

  // Without --dry-run: the damaged copy is moved aside, counted, logged as a download's would be, and audited.
  const [run] = (await runCliBatch([{ args: ['blobs', 'check', ...connection] }])) as [CliResult];
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /^checked \d+ files .*: \d+ sound, 2 missing, 1 damaged \(moved aside: 1\)\n/);
  const [header, ...rows] = run.stdout.trimEnd().split('\n');
  assert.match(header!, /^PROBLEM +SHA256 +BYTES +VERSIONS +DEVICES \(ACTIVE\/CANDIDATE\/PREVIOUS\) +DETAIL$/);
  assert.equal(rows.length, 3);
  assert.match(rows[2]!, new RegExp(`^damaged +${damaged.sha256} +${damaged.bytes} +iris@1 model\\.onnx \\(production\\) +1/0/1 +its bytes hash to [0-9a-f]{64}: moved to .*damaged`));
  assert.equal(await blobs.openForRead(damaged.sha256), null, 'the damaged copy still answers at its address');
  assert.equal((await readdir(join(blobs.root, 'damaged'))).length, 1);
  const metrics = await (await server.request('GET', '/metrics', { token: null })).text();
  assert.match(metrics, /^fleetprune_blobs_damaged_total 1$/m);
  const audit = (await (await server.request('GET', '/api/audit')).json()) as { entries: { action: string; details: { setAside: { sha256: string }[]; missing: number } }[] };
  const entry = audit.entries.find((e) => e.action === 'blobs.check');
  assert.deepEqual(entry?.details.setAside.map((aside) => aside.sha256), [damaged.sha256]);
  assert.equal(entry?.details.missing, 2);

  // REST: the same check; the copy moved aside now reads as missing, and says why.
  const rest = await server.request('POST', '/api/blobs/check', { json: {} });
  assert.equal(rest.status, 200);
  const restReport = (await rest.json()) as { problems: { problem: string; sha256: string; detail: string }[]; dryRun: boolean };
  assert.equal(restReport.dryRun, false);
  assert.deepEqual(restReport.problems.map((problem) => problem.problem), ['missing', 'missing', 'missing']);
  assert.match(restReport.problems.find((problem) => problem.sha256 === damaged.sha256)!.detail, /^not stored: its copy was found damaged earlier and moved to .*damaged/);

  // A push of the artifacts uploads the files again (the versions exist: their registration is a conflict).
  for (const artifact of [first, second]) assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 409);
  const healed = (await (await server.request('POST', '/api/blobs/check', { json: { dryRun: true } })).json()) as { problems: unknown[]; sound: number };
  assert.deepEqual(healed.problems, []);
  assert.equal(healed.sound, files.size);
});

test('blobs check: non-admin tokens and bad requests are refused, over REST, gRPC and the CLI, and change nothing', async (t) => {
  const server = (await startTestServer(t))!;
  const operator = ((await (await server.request('POST', '/api/tokens', { json: { role: 'operator' } })).json()) as { token: string }).token;
  const before = await storeSnapshot(server);
  assert.equal((await server.request('POST', '/api/blobs/check', { json: {}, token: operator })).status, 403);
  const unknown = await server.request('POST', '/api/blobs/check', { json: { dryrun: true } });
  assert.equal(unknown.status, 400);
  assert.match(((await unknown.json()) as { error: { message: string } }).error.message, /dryrun: unknown field/);
  assert.equal((await server.request('POST', '/api/blobs/check', { json: { dryRun: 'yes' } })).status, 400);
  const [denied, empty] = (await runCliBatch([
    { args: ['blobs', 'check', '--server', server.grpcAddress, '--token', operator] },
    { args: ['blobs', 'check', '--server', server.grpcAddress, '--token', ADMIN_TOKEN] },
  ])) as [CliResult, CliResult];
  assert.equal(denied.code, 2, denied.stderr);
  assert.ok(isOneLineError(denied.stderr), denied.stderr);
  assert.match(denied.stderr, /admin/);
  // An empty registry has nothing to check, and says so in numbers.
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(empty.stderr, 'checked 0 files (0 bytes) of 0 versions: 0 sound, 0 missing, 0 damaged\n');
  assert.equal(await storeSnapshot(server), before);
});

test('blobs check: a file the server cannot read (a disk error) is reported as unreadable, and the check goes on with the others', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifact = await makeArtifact(t, { seed: 3, privateKey: signer.privateKey });
  assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
  const failing = artifact.manifest.files[ONNX_FILE]!.sha256;
  // The server's own store, but for one file whose reads fail as a failing disk's do (root reads
  // any file whatever its mode, so a chmod cannot make one unreadable here).
  class FailingDisk extends BlobStore {
    override async openForRead(sha256: string) {
      if (sha256 === failing) throw Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO' });
      return super.openForRead(sha256);
    }
  }
  const { ctx } = server.server;
  const result = await checkBlobs(
    { store: ctx.store, blobs: new FailingDisk(ctx.blobs.root), devices: new DevicesRepository(ctx.store.engine), onDamaged: async () => null },
    { dryRun: false, actor: 'test' },
  );
  assert.equal(result.sound, Object.keys(artifact.manifest.files).length - 1);
  assert.deepEqual(
    result.problems.map((problem) => [problem.problem, problem.sha256, problem.setAside]),
    [['unreadable', failing, null]],
  );
  assert.match(result.problems[0]!.detail, /^the server could not read it \(EIO\)/);
});

test('blobs check: a FIFO or a directory where a file belongs is named as such (the check does not hang on the FIFO), and an upload to that address is refused saying so, not a 500', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifact = await makeArtifact(t, { seed: 7, privateKey: signer.privateKey });
  assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
  const { blobs } = server.server.ctx;
  const onnxFile = artifact.manifest.files[ONNX_FILE]!.sha256;
  const [, other] = otherFile(artifact.manifest);
  await rm(blobs.pathOf(onnxFile));
  execFileSync('mkfifo', [blobs.pathOf(onnxFile)]);
  await rm(blobs.pathOf(other.sha256));
  await mkdir(blobs.pathOf(other.sha256));
  const response = await server.request('POST', '/api/blobs/check', { json: {} });
  assert.equal(response.status, 200);
  const report = (await response.json()) as { problems: { problem: string; sha256: string; detail: string }[] };
  const detailOf = (sha256: string) => report.problems.find((problem) => problem.sha256 === sha256);
  assert.equal(detailOf(onnxFile)?.problem, 'unreadable');
  assert.match(detailOf(onnxFile)!.detail, /^a FIFO is at its address, .*, not the file: remove it by hand/);
  assert.match(detailOf(other.sha256)!.detail, /^a directory is at its address/);
  // Downloads find no file there either (a 404), at once.
  assert.equal((await server.request('GET', `/api/blobs/${onnxFile}`)).status, 404);
  // A push that would upload the file there is refused naming the address, and leaves it as it was.
  const put = await server.request('PUT', `/api/blobs/${other.sha256}`, { body: await readFile(join(artifact.dir, otherFile(artifact.manifest)[0])), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 409);
  assert.match(((await put.json()) as { error: { message: string } }).error.message, /^the server's blob store holds something other than a file where blob [0-9a-f]{64} belongs \(EISDIR at .*\): its administrator must remove it; then push again$/);
  assert.ok((await stat(blobs.pathOf(other.sha256))).isDirectory());
});
