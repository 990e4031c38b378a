import assert from 'node:assert/strict';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { test } from 'node:test';
import { loadFleetpruneProto } from '../../shared/proto/load-proto.ts';
import { runCli } from './helpers/run-cli.ts';

/**
 * A server from before expiring tokens answers CreateToken as it always did: the request's
 * expires_in_s is a field it does not know (dropped), its record has no expires_at. Played here by
 * a gRPC server with that behaviour, since no older fleetprune is at hand in a test.
 */
test('tokens create --expires-in against a server that drops the expiry: refused, and the never-expiring token it made is revoked again', async (t) => {
  const proto = loadFleetpruneProto();
  const revoked: string[] = [];
  const server = new Server();
  server.addService(proto.Tokens.service, {
    CreateToken: (_call: unknown, callback: (error: null, response: object) => void) =>
      callback(null, { token: 'fp_old-server-token', record: { id: 'tok-old', role: 'viewer', label: 'viewer token', created_at: new Date().toISOString(), created_by: 'token:admin', revoked_at: '' } }),
    RevokeToken: (call: { request: { id: string } }, callback: (error: null, response: object) => void) => {
      revoked.push(call.request.id);
      callback(null, {});
    },
    ListTokens: (_call: unknown, callback: (error: null, response: object) => void) => callback(null, { tokens: [] }),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  t.after(() => server.forceShutdown());
  const connection = ['--server', `127.0.0.1:${port}`, '--token', 'fp_admin-token-0123456789'];

  const run = await runCli(['tokens', 'create', '--role', 'viewer', '--expires-in', '1h', ...connection]);
  assert.deepEqual([run.code, run.stdout], [2, ''], 'no token printed');
  assert.equal(run.stderr, 'fleetprune: --expires-in: the server does not take token expiries (it is older than this CLI); the token it made (tok-old) would never expire, so it was revoked again\n');
  assert.deepEqual(revoked, ['tok-old']);

  // Without --expires-in the same answer is a token, as ever.
  const plain = await runCli(['tokens', 'create', '--role', 'viewer', ...connection]);
  assert.deepEqual([plain.code, plain.stdout], [0, 'fp_old-server-token\n']);
  assert.deepEqual(revoked, ['tok-old']);
});
