import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../helpers/cli.ts';
import { runCli } from './helpers/run-cli.ts';
import { spawnServer } from './helpers/server-process.ts';
import { makeArtifact, makeSigner, pushArtifact } from './helpers/artifacts.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

test('REST: 401 without or with a bad token, 403 for too weak a role, device tokens only download', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const artifact = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey });
  await pushArtifact(server, 'iris', artifact.dir, artifact.manifest);
  const tokenOf = async (role: string) => ((await (await server.request('POST', '/api/tokens', { json: { role } })).json()) as any).token as string;
  const viewer = await tokenOf('viewer');
  const operator = await tokenOf('operator');
  const device = await tokenOf('device');

  const missing = await server.request('GET', '/api/models', { token: null });
  assert.equal(missing.status, 401);
  assert.equal(((await missing.json()) as any).error.code, 'unauthenticated');
  assert.equal((await server.request('GET', '/api/models', { token: 'fp_wrong' })).status, 401);

  assert.equal((await server.request('GET', '/api/models', { token: viewer })).status, 200);
  const viewerWrite = await server.request('PUT', '/api/models/iris/aliases/production', { token: viewer, json: { version: '1' } });
  assert.equal(viewerWrite.status, 403);
  assert.match(((await viewerWrite.json()) as any).error.message, /operator or admin/);
  assert.equal((await server.request('PUT', '/api/models/iris/aliases/production', { token: operator, json: { version: '1' } })).status, 200);
  assert.equal((await server.request('POST', '/api/tokens', { token: operator, json: { role: 'admin' } })).status, 403);

  assert.equal((await server.request('GET', '/api/models', { token: device })).status, 403);
  const sha = artifact.manifest.files['model.onnx']!.sha256;
  assert.equal((await server.request('GET', `/api/blobs/${sha}`, { token: device })).status, 200);
  const id = ((await (await server.request('GET', '/api/models/iris/versions/1')).json()) as any).artifactId;
  assert.equal((await server.request('GET', `/api/artifacts/${id}/manifest.json`, { token: device })).status, 200);

  const tokens = (await (await server.request('GET', '/api/tokens')).json()) as any;
  assert.ok(tokens.tokens.every((record: any) => !('token' in record) && !JSON.stringify(record).includes(viewer)));
  const stored = await server.server.ctx.store.engine.all('SELECT token_hash FROM tokens');
  assert.ok(stored.every((row) => !String(row.token_hash).startsWith('fp_')), 'tokens are stored hashed');
});

test('REST: revoking a token twice is a conflict (as for a device), a token never issued is not found; neither is audited', async (t) => {
  const server = (await startTestServer(t))!;
  const answer = await server.request('POST', '/api/tokens', { json: { role: 'viewer' } });
  assert.equal(answer.headers.get('cache-control'), 'no-store', 'a new token is kept by no cache');
  const created = (await answer.json()) as any;
  assert.equal((await server.request('DELETE', `/api/tokens/${created.record.id}`)).status, 204);
  const audited = async () => Number((await server.server.ctx.store.engine.all("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'token.revoke'"))[0]!.n);
  assert.equal(await audited(), 1);
  const again = await server.request('DELETE', `/api/tokens/${created.record.id}`);
  assert.equal(again.status, 409);
  assert.deepEqual(((await again.json()) as any).error, { code: 'conflict', message: `token ${created.record.id} is already revoked` });
  const unknown = await server.request('DELETE', '/api/tokens/no-such-token');
  assert.equal(unknown.status, 404);
  assert.equal(((await unknown.json()) as any).error.message, 'no token no-such-token');
  assert.equal(await audited(), 1);
});

test('a token label with a newline or an escape sequence is refused over REST and gRPC (it forged rows in tables and the audit log); a tab is fine', async (t) => {
  const server = (await startTestServer(t))!;
  const tokens = grpcClient(server.grpcAddress, 'Tokens', ADMIN_TOKEN);
  t.after(() => tokens.close());
  const count = async () => ((await (await server.request('GET', '/api/tokens')).json()) as any).tokens.length;
  const before = await count();
  for (const [label, found] of [['ops\nadmin  fp_forged', 'U+000A at character 4'], ['\u001b[31mred', 'U+001B at character 1'], ['ok\u009b2J', 'U+009B at character 3'], ['ops \u202etxt.exe', 'U+202E at character 5'], ['a\u2028b', 'U+2028 at character 2']] as const) {
    const response = await server.request('POST', '/api/tokens', { json: { role: 'viewer', label } });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as any).error.message, `body.label: must not contain control characters such as newlines or escape sequences (found ${found})`);
    await assert.rejects(tokens.call('CreateToken', { role: 'viewer', label }), (error: any) => error.code === status.INVALID_ARGUMENT && error.details.startsWith('label: must not contain control characters'));
  }
  // A blank label (it showed as nothing in `tokens list` and the audit log) is refused too.
  const blank = await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: '   ' } });
  assert.equal(blank.status, 400);
  assert.equal(((await blank.json()) as any).error.message, 'body.label: must not be blank (leave it out instead)');
  await assert.rejects(tokens.call('CreateToken', { role: 'viewer', label: ' \t' }), (error: any) => error.code === status.INVALID_ARGUMENT && error.details === 'label: must not be blank (leave it out instead)');
  assert.equal(await count(), before, 'no token was made');
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'ops\tpager' } })).status, 201);
  // Right-to-left text with its marks is a label like any other.
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'צוות\u200f ops' } })).status, 201);
});

test('gRPC: UNAUTHENTICATED and PERMISSION_DENIED', async (t) => {
  const server = (await startTestServer(t))!;
  const created = (await (await server.request('POST', '/api/tokens', { json: { role: 'viewer' } })).json()) as any;
  const anonymous = grpcClient(server.grpcAddress, 'ModelRegistry', null);
  const viewer = grpcClient(server.grpcAddress, 'ModelRegistry', created.token);
  const viewerTokens = grpcClient(server.grpcAddress, 'Tokens', created.token);
  t.after(() => [anonymous, viewer, viewerTokens].forEach((client) => client.close()));
  await assert.rejects(anonymous.call('ListModels', {}), (error: any) => error.code === status.UNAUTHENTICATED);
  assert.deepEqual((await viewer.call('ListModels', {})).models, []);
  await assert.rejects(viewer.call('SetAlias', { name: 'iris', alias: 'production', version: '1' }), (error: any) => error.code === status.PERMISSION_DENIED);
  await assert.rejects(viewerTokens.call('CreateToken', { role: 'admin' }), (error: any) => error.code === status.PERMISSION_DENIED);
});

test('an admin token is created on first start when none is configured', async (t) => {
  const server = (await startTestServer(t, { config: { adminToken: undefined } }))!;
  const token = server.server.createdAdminToken;
  assert.ok(token?.startsWith('fp_'));
  assert.equal((await server.request('GET', '/api/tokens', { token })).status, 200);
});

test('a start that fails (bad TLS files, a taken port) makes no admin token; the first good start makes and prints it', async (t) => {
  const dataDir = await tempDir(t);
  const junk = join(await tempDir(t), 'junk.txt');
  await writeFile(junk, 'not a certificate\n');
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const taken = String((blocker.address() as AddressInfo).port);
  // Unset (undefined is left out of a child's environment); set but empty is refused.
  const noEnvToken = { FLEETPRUNE_ADMIN_TOKEN: undefined };
  const ports = ['--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0'];
  for (const flags of [['--tls-cert', junk, '--tls-key', junk], ['--grpc-port', taken], ['--http-port', taken]]) {
    const failed = await runCli(['server', '--data-dir', dataDir, ...ports, ...flags], noEnvToken, { timeoutMs: 30_000 });
    assert.equal(failed.code, 2, failed.stderr);
    assert.ok(!failed.stderr.includes('admin token'), failed.stderr);
  }

  const server = await spawnServer(t, dataDir, [], noEnvToken);
  let token: string | undefined;
  for (let waited = 0; token === undefined && waited < 5000; waited += 50) {
    token = /created the admin token \(shown only this once; store it now\): (fp_\S+)/.exec(server.stderr())?.[1];
    if (token === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(token, `the good start prints the admin token: ${server.stderr()}`);
  const tokens = await fetch(`${server.baseUrl}/api/tokens`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(tokens.status, 200);
  const admins = ((await tokens.json()) as { tokens: { role: string }[] }).tokens.filter((record) => record.role === 'admin');
  assert.equal(admins.length, 1, 'exactly one admin token: the printed one');
});

test("a device's own token is not revoked alone (REST 409, gRPC FAILED_PRECONDITION, naming the device): revoking the device revokes it", async (t) => {
  const server = (await startTestServer(t))!;
  const tokensGrpc = grpcClient(server.grpcAddress, 'Tokens', ADMIN_TOKEN);
  t.after(() => tokensGrpc.close());
  assert.equal((await server.request('POST', '/api/devices', { json: { id: 'cam-7' } })).status, 201);
  const listed = ((await (await server.request('GET', '/api/tokens')).json()) as any).tokens;
  const own = listed.find((token: any) => token.label === 'device cam-7');
  assert.ok(own, JSON.stringify(listed));
  const message = `token ${own.id} is device cam-7's own; revoke the device instead (fleetprune devices revoke cam-7, or DELETE /api/devices/cam-7), which revokes its token too`;
  const refused = await server.request('DELETE', `/api/tokens/${own.id}`);
  assert.equal(refused.status, 409);
  assert.equal(((await refused.json()) as any).error.message, message);
  await assert.rejects(tokensGrpc.call('RevokeToken', { id: own.id }), (error: any) => error.code === status.FAILED_PRECONDITION && error.details === message);
  const still = ((await (await server.request('GET', '/api/tokens')).json()) as any).tokens.find((token: any) => token.id === own.id);
  assert.equal(still.revokedAt, null, 'the token still works');
  // A device-role token made by hand belongs to no device: revoked as any other.
  const loose = (await (await server.request('POST', '/api/tokens', { json: { role: 'device', label: 'downloader' } })).json()) as any;
  assert.equal((await server.request('DELETE', `/api/tokens/${loose.record.id}`)).status, 204);

  assert.equal((await server.request('DELETE', '/api/devices/cam-7')).status, 204);
  const after = ((await (await server.request('GET', '/api/tokens')).json()) as any).tokens.find((token: any) => token.id === own.id);
  assert.notEqual(after.revokedAt, null, 'revoked with the device');
  const again = await server.request('DELETE', `/api/tokens/${own.id}`);
  assert.equal(again.status, 409);
  assert.equal(((await again.json()) as any).error.message, `token ${own.id} is already revoked`);
});

test('expiring tokens: REST expiresInSeconds, gRPC expires_in_s and CLI --expires-in set it; bad values are refused, nothing made; an expired token is 401 naming it', async (t) => {
  const server = (await startTestServer(t))!;
  const count = async () => Number((await server.server.ctx.store.engine.all('SELECT COUNT(*) AS n FROM tokens'))[0]!.n);
  const before = await count();
  for (const [value, message] of [
    [0, 'body.expiresInSeconds: must be at least 1 second'],
    [1.5, 'body.expiresInSeconds: must be a whole number of seconds'],
    [315_360_001, 'body.expiresInSeconds: must be at most ten years (315360000 seconds)'],
    // Past 2^53 a number is no safe integer either: its size alone is said, not "a whole number".
    [99999999999999999999, 'body.expiresInSeconds: must be at most ten years (315360000 seconds)'],
  ] as const) {
    const refused = await server.request('POST', '/api/tokens', { json: { role: 'viewer', expiresInSeconds: value } });
    assert.equal(refused.status, 400, String(value));
    assert.equal(((await refused.json()) as any).error.message, message);
  }
  assert.equal((await server.request('POST', '/api/tokens', { json: { role: 'viewer', expiresInSeconds: '60' } })).status, 400);
  const grpc = grpcClient(server.grpcAddress, 'Tokens', ADMIN_TOKEN);
  t.after(() => grpc.close());
  await assert.rejects(grpc.call('CreateToken', { role: 'viewer', expires_in_s: 400_000_000 }), (error: any) => {
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.equal(error.details, 'expires_in_s: must be at most ten years (315360000 seconds)');
    return true;
  });
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const badCli = await runCli(['tokens', 'create', '--role', 'viewer', '--expires-in', '3 days', ...connection]);
  assert.deepEqual([badCli.code, badCli.stderr], [2, "fleetprune: option '--expires-in <duration>' argument '3 days' is invalid. must be a duration such as 90d, 2w, 12h or 1d12h (run with --help for usage)\n"]);
  const tooLong = await runCli(['tokens', 'create', '--role', 'viewer', '--expires-in', '3651d', ...connection]);
  assert.deepEqual([tooLong.code, tooLong.stderr], [2, 'fleetprune: --expires-in: must be between 1s and ten years (3650d)\n']);
  assert.equal(await count(), before, 'no token made');

  const rest = (await (await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: 'contractor', expiresInSeconds: 3600 } })).json()) as any;
  assert.equal(Date.parse(rest.record.expiresAt) - Date.parse(rest.record.createdAt), 3600_000);
  const overGrpc = await grpc.call('CreateToken', { role: 'viewer', label: 'ci', expires_in_s: 60 });
  assert.equal(Date.parse(overGrpc.record.expires_at) - Date.parse(overGrpc.record.created_at), 60_000);
  const viaCli = await runCli(['tokens', 'create', '--role', 'operator', '--label', 'pilot week', '--expires-in', '1w12h', ...connection]);
  assert.equal(viaCli.code, 0, viaCli.stderr);
  const cliRecord = ((await (await server.request('GET', '/api/tokens')).json()) as any).tokens.find((token: any) => token.label === 'pilot week');
  assert.equal(Date.parse(cliRecord.expiresAt) - Date.parse(cliRecord.createdAt), (7 * 24 + 12) * 3600_000);
  assert.equal(viaCli.stderr, `created operator token ${cliRecord.id}, expiring at ${cliRecord.expiresAt}; store it now, it is not shown again\n`);
  const forever = (await (await server.request('POST', '/api/tokens', { json: { role: 'viewer' } })).json()) as any;
  assert.equal(forever.record.expiresAt, null);

  // It works until its time; then REST and gRPC refuse it, naming it and when it expired.
  assert.equal((await server.request('GET', '/api/models', { token: rest.token })).status, 200);
  const past = new Date(Date.now() - 1000).toISOString();
  await server.server.ctx.store.engine.run('UPDATE tokens SET expires_at = ? WHERE id = ?', [past, rest.record.id]);
  const expired = await server.request('GET', '/api/models', { token: rest.token });
  assert.equal(expired.status, 401);
  assert.deepEqual(((await expired.json()) as any).error, { code: 'unauthenticated', message: `token ${rest.record.id} expired at ${past}; ask an admin for a new one (fleetprune tokens create)` });
  const expiredGrpc = grpcClient(server.grpcAddress, 'ModelRegistry', rest.token);
  t.after(() => expiredGrpc.close());
  await assert.rejects(expiredGrpc.call('ListModels', {}), (error: any) => {
    assert.equal(error.code, status.UNAUTHENTICATED);
    assert.match(error.details, new RegExp(`^token ${rest.record.id} expired at `));
    return true;
  });
  assert.equal((await server.request('GET', '/api/models', { token: forever.token })).status, 200);

  // tokens list shows when each expires, and which have.
  const listed = await runCli(['tokens', 'list', ...connection]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /^ID +ROLE +LABEL +CREATED +BY +EXPIRES +REVOKED$/m);
  assert.match(listed.stdout, new RegExp(`^${rest.record.id} +viewer +contractor +\\S+ +\\S+ +${past.replace(/\./g, '\\.')} \\(expired\\) +-$`, 'm'));
  assert.match(listed.stdout, new RegExp(`^${forever.record.id} +viewer +viewer token +\\S+ +\\S+ +- +-$`, 'm'));
  const json = JSON.parse((await runCli(['tokens', 'list', '--json', ...connection])).stdout) as any[];
  assert.equal(json.find((token) => token.id === cliRecord.id).expiresAt, cliRecord.expiresAt);
});
