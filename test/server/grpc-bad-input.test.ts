import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { describe, test } from 'node:test';
import { grpcClient } from './helpers/grpc-client.ts';
import { STORE_ENGINES } from './helpers/store-engines.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/** Out-of-range numbers in gRPC requests are INVALID_ARGUMENT naming the field, on both engines (PostgreSQL rejects LIMIT -1 itself). */
for (const engine of STORE_ENGINES) {
  describe(`gRPC numeric arguments on ${engine}`, () => {
    test('negative or too large limits and cursors are refused with the field named', async (t) => {
      const server = await startTestServer(t, { engine });
      if (!server) return;
      const audit = grpcClient(server.grpcAddress, 'Audit', ADMIN_TOKEN);
      const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
      const tokens = grpcClient(server.grpcAddress, 'Tokens', ADMIN_TOKEN);
      t.after(() => [audit, models, tokens].forEach((client) => client.close()));
      await server.request('POST', '/api/tokens', { json: { role: 'viewer' } }); // one audit entry
      const refused = (field: string) => (error: any) => error.code === status.INVALID_ARGUMENT && error.details.startsWith(`${field}: `);
      await assert.rejects(audit.call('ListAudit', { limit: -1 }), refused('limit'));
      await assert.rejects(audit.call('ListAudit', { limit: 5000 }), refused('limit'));
      await assert.rejects(audit.call('ListAudit', { before: '-3' }), refused('before'));
      await assert.rejects(models.call('ListVersions', { name: 'iris', limit: -1 }), refused('limit'));
      // The same cursor rule as REST's ?after=.
      const rest = await server.request('GET', '/api/models/iris/versions?after=-5');
      assert.equal(rest.status, 400);
      assert.match(((await rest.json()) as any).error.message, /^query\.after: /);
      await assert.rejects(models.call('ListVersions', { name: 'iris', after_seq: -5 }), refused('after_seq'));
      const entries = (await audit.call('ListAudit', {})).entries;
      assert.equal(entries.length, 1);
      assert.equal(entries[0].action, 'token.create');
      assert.deepEqual((await audit.call('ListAudit', { before: entries[0].id })).entries, []);

      // Token labels: REST's limit (at most 200 characters), '' is absent; nothing is stored.
      const long = 'x'.repeat(201);
      const tokenCount = (await tokens.call('ListTokens', {})).tokens.length;
      const restLong = await server.request('POST', '/api/tokens', { json: { role: 'viewer', label: long } });
      assert.equal(restLong.status, 400);
      assert.match(((await restLong.json()) as any).error.message, /^body\.label: /);
      await assert.rejects(tokens.call('CreateToken', { role: 'viewer', label: long }), refused('label'));
      assert.equal((await tokens.call('ListTokens', {})).tokens.length, tokenCount, 'no token was stored');
      assert.equal((await tokens.call('CreateToken', { role: 'viewer', label: '' })).record.label, 'viewer token');
    });
  });
}
