import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from './helpers/run-cli.ts';
import { makeArtifact } from './helpers/artifacts.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';
import { loadPrivateKey } from '../../shared/artifact/signing-keys.ts';
import { join } from 'node:path';
import { artifactId } from '../../shared/artifact/manifest.ts';

test('CLI over gRPC: tokens create, list and revoke, models push, list, show, alias; friendly errors', async (t) => {
  const server = (await startTestServer(t))!;
  // Sign with the server's own key, which it always trusts.
  const key = await loadPrivateKey(join(server.dataDir, 'keys', 'signing.key'));
  const artifact = await makeArtifact(t, { seed: 21, privateKey: key });
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];

  const created = await runCli(['tokens', 'create', '--role', 'operator', ...connection]);
  assert.equal(created.code, 0, created.stderr);
  const operator = created.stdout.trim();
  assert.match(operator, /^fp_/);

  const pushed = await runCli(['models', 'push', artifact.dir, '--server', server.grpcAddress, '--token', operator]);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.match(pushed.stdout, new RegExp(`registered iris@1 \\(artifact ${artifactId(artifact.manifest)}\\)`));

  const alias = await runCli(['models', 'alias', 'iris@1', 'candidate', ...connection]);
  assert.equal(alias.code, 0, alias.stderr);
  const shown = await runCli(['models', 'show', 'iris@candidate', ...connection]);
  assert.match(shown.stdout, /^iris@1 \(candidate\)/);
  const listed = await runCli(['models', 'list', ...connection]);
  assert.match(listed.stdout, /^iris\t1 versions\tlatest 1$/m);

  const missing = await runCli(['models', 'alias', 'iris@7', 'production', ...connection]);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr.trim(), 'fleetprune: no version iris@7; the production alias was not moved');
  const denied = await runCli(['tokens', 'create', '--role', 'admin', '--server', server.grpcAddress, '--token', operator]);
  assert.match(denied.stderr, /^fleetprune: permission denied: /);

  // tokens list shows ids and roles, never secrets; tokens revoke stops a token at once.
  const tokenList = await runCli(['tokens', 'list', '--json', ...connection]);
  assert.equal(tokenList.code, 0, tokenList.stderr);
  const records = JSON.parse(tokenList.stdout) as { id: string; role: string; revoked_at: string }[];
  const operatorRecord = records.find((r) => r.role === 'operator' && r.revoked_at === '');
  assert.ok(operatorRecord, tokenList.stdout);
  assert.ok(!tokenList.stdout.includes(operator), 'the secret is never listed');
  const table = await runCli(['tokens', 'list', ...connection]);
  assert.match(table.stdout, new RegExp(`^${operatorRecord.id}\\s+operator\\s+`, 'm'));
  const revoked = await runCli(['tokens', 'revoke', operatorRecord.id, ...connection]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal(revoked.stderr.trim(), `revoked token ${operatorRecord.id}`);
  const afterRevoke = await runCli(['models', 'list', '--server', server.grpcAddress, '--token', operator]);
  assert.notEqual(afterRevoke.code, 0, 'a revoked token no longer works');
  const again = await runCli(['tokens', 'revoke', operatorRecord.id, ...connection]);
  assert.equal(again.code, 2);
  assert.equal(again.stderr.trim(), `fleetprune: no live token ${operatorRecord.id}`);
  const badId = await runCli(['tokens', 'revoke', 'not/an/id', ...connection]);
  assert.equal(badId.code, 2);
  assert.match(badId.stderr, /^fleetprune: .*must be a token id/);

  const unreachable = await runCli(['models', 'list', '--server', '127.0.0.1:1', '--token', 'x']);
  assert.equal(unreachable.stderr.trim(), 'fleetprune: cannot reach the server at 127.0.0.1:1 (ECONNREFUSED)');
});
