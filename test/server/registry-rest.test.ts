import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { artifactId, type Manifest } from '../../shared/artifact/manifest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { makeArtifact, makeSigner, pushArtifact, storeSnapshot, uploadBlobs } from './helpers/artifacts.ts';
import { STORE_ENGINES, type StoreEngineName } from './helpers/store-engines.ts';
import { spawnServer } from './helpers/server-process.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';
import { expectError } from './helpers/api-errors.ts';

async function setup(t: TestContext, engine: StoreEngineName, config = {}) {
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { engine, config: { trustedKeys: [signer.publicKeyPath], ...config } });
  return server ? { server, signer } : null;
}

/** Runs `attempt` and asserts it left the store exactly as it was. */
async function unchanged(server: TestServer, attempt: () => Promise<void>): Promise<void> {
  const before = await storeSnapshot(server);
  await attempt();
  assert.equal(await storeSnapshot(server), before, 'the store changed');
}

for (const engine of STORE_ENGINES) {
  describe(`REST registry on ${engine}`, () => {
    test('checking a push lists the files still to upload and refuses what registering would refuse, changing nothing', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const artifact = await makeArtifact(t, { seed: 5, privateKey: signer.privateKey });
      const check = (manifest: unknown, name = 'iris') => server.request('POST', `/api/models/${name}/versions/check`, { json: { manifest } });
      const all = [...new Set(Object.values(artifact.manifest.files).map((file) => file.sha256))].sort();
      await unchanged(server, async () => {
        const before = await check(artifact.manifest);
        assert.equal(before.status, 200);
        assert.deepEqual(((await before.json()) as any).missingBlobs.sort(), all);
      });
      const onnx = artifact.manifest.files['model.onnx']!.sha256;
      const put = await server.request('PUT', `/api/blobs/${onnx}`, { body: await readFile(join(artifact.dir, 'model.onnx')), headers: { 'content-type': 'application/octet-stream' } });
      assert.ok(put.ok, String(put.status));
      assert.deepEqual(((await (await check(artifact.manifest)).json()) as any).missingBlobs.sort(), all.filter((sha) => sha !== onnx));

      await unchanged(server, async () => {
        const foreign = await makeArtifact(t, { seed: 6, privateKey: generateKeyPairSync('ed25519').privateKey });
        await expectError(await check(foreign.manifest), 400, 'bad_request', /manifest\.signature: key [0-9a-f]+ is not trusted/);
        await expectError(await check({ ...artifact.manifest, task: 'ranking' }), 400, 'bad_request', /^manifest\.task: /);
        // Scores no pruning measures: a percentage given as accuracy, a negative MSE, an R² over 1.
        await expectError(await check({ ...artifact.manifest, metrics: { test: { accuracy: 7.5 } } }), 400, 'bad_request', /^manifest\.metrics\.test\.accuracy: must be between 0 and 1 \(a share, not a percentage\)/);
        await expectError(await check({ ...artifact.manifest, metrics: { test: { mse: -1, r2: 0.5 } } }), 400, 'bad_request', /^manifest\.metrics\.test\.mse: must not be negative/);
        await expectError(await check({ ...artifact.manifest, metrics: { test: { mse: 1, r2: 1.5 } } }), 400, 'bad_request', /^manifest\.metrics\.test\.r2: must be at most 1/);
        await expectError(await check(artifact.manifest, 'Bad Name'), 400, 'bad_request', /name/);
      });
      assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
      await unchanged(server, async () => {
        await expectError(await check(artifact.manifest), 409, 'already_exists', /is already registered as iris@1/);
      });
    });

    test("GET /api/versions pages through every model's versions, by model then registration order, each as its model's list shows it", async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      for (const [name, seed] of [['wine', 1], ['iris', 2], ['iris', 3]] as const) {
        const artifact = await makeArtifact(t, { seed, name, privateKey: signer.privateKey });
        const pushed = await pushArtifact(server, name, artifact.dir, artifact.manifest);
        assert.equal(pushed.status, 201, await pushed.text());
      }
      assert.equal((await server.request('PUT', '/api/models/iris/aliases/production', { json: { version: '2' } })).status, 200);
      const get = async (query: string) => {
        const response = await server.request('GET', `/api/versions${query}`);
        assert.equal(response.status, 200, query);
        const page = (await response.json()) as { versions: any[]; more: boolean };
        return [page.versions.map((v) => `${v.model}@${v.version}`), page.more];
      };
      const all = (await (await server.request('GET', '/api/versions')).json()) as { versions: any[] };
      const perModel = async (name: string) => ((await (await server.request('GET', `/api/models/${name}/versions`)).json()) as { versions: any[] }).versions;
      assert.deepEqual(all.versions, [...(await perModel('iris')), ...(await perModel('wine'))], 'aliases and statuses as each model\'s list gives them');
      assert.deepEqual([all.versions[1].aliases, all.versions[1].status?.status, all.versions[0].status], [['production'], 'production', null]);
      assert.deepEqual(await get(''), [['iris@1', 'iris@2', 'wine@1'], false]);
      assert.deepEqual(await get('?limit=2'), [['iris@1', 'iris@2'], true]);
      assert.deepEqual(await get('?limit=2&afterModel=iris&afterSeq=2'), [['wine@1'], false]);
      assert.deepEqual(await get('?limit=1&afterModel=iris&afterSeq=1'), [['iris@2'], true]);
      assert.deepEqual(await get('?limit=3'), [['iris@1', 'iris@2', 'wine@1'], false], 'a page that ends with the last version says no more follow');
      assert.deepEqual(await get('?afterModel=wine&afterSeq=1'), [[], false]);
      await expectError(await server.request('GET', '/api/versions?afterModel=iris'), 400, 'bad_request', /^query\.afterSeq: give \?afterModel and \?afterSeq together/);
    });

    test('push, list, show, alias, retire, download the manifest, audit', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const general = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey, units: 12 });
      const pruned = await makeArtifact(t, { seed: 2, privateKey: signer.privateKey, parent: artifactId(general.manifest) });
      const first = await pushArtifact(server, 'iris', general.dir, general.manifest);
      assert.equal(first.status, 201);
      const second = await pushArtifact(server, 'iris', pruned.dir, pruned.manifest);
      const v2 = (await second.json()) as any;
      assert.equal(v2.version, '2');
      assert.deepEqual(v2.lineage.parent, { model: 'iris', version: '1' });
      assert.equal(v2.lineage.epsilon, 0.1);
      assert.equal(v2.artifactId, artifactId(pruned.manifest));

      const list = (await (await server.request('GET', '/api/models')).json()) as any;
      assert.deepEqual(list.models.map((m: any) => [m.name, m.versionCount, m.latestVersion]), [['iris', 2, '2']]);
      // GET /api/models/{name} answers what its document describes, and its summary promises nothing more (it said "with its aliases").
      const model = (await (await server.request('GET', '/api/models/iris')).json()) as any;
      const getModel = ((await (await server.request('GET', '/api/openapi.json', { token: null })).json()) as any).paths['/api/models/{name}'].get;
      const documented = Object.keys(getModel.responses['200'].content['application/json'].schema.properties);
      assert.deepEqual(Object.keys(model).sort(), [...documented].sort());
      if (/alias/i.test(getModel.summary)) assert.ok(documented.includes('aliases'), `"${getModel.summary}" promises aliases the response lacks`);
      const versions = (await (await server.request('GET', '/api/models/iris/versions?limit=1&after=1')).json()) as any;
      assert.deepEqual(versions.versions.map((v: any) => v.version), ['2']);

      const alias = await server.request('PUT', '/api/models/iris/aliases/production', { json: { version: '2' } });
      assert.equal(alias.status, 200);
      // The same again changes nothing, and is not audited (the audit below holds one alias.set).
      const again = await server.request('PUT', '/api/models/iris/aliases/production', { json: { version: '2' } });
      assert.equal(again.status, 200);
      assert.equal(((await again.json()) as { version: string }).version, '2');
      const production = (await (await server.request('GET', '/api/models/iris/versions/production')).json()) as any;
      assert.equal(production.version, '2');
      assert.deepEqual(production.aliases, ['production']);
      assert.deepEqual([production.status?.status, production.status?.reason], ['production', 'production alias set by token:env-admin']);
      const retireHeld = await server.request('PATCH', '/api/models/iris/versions/2', { json: { retired: true } });
      assert.equal(retireHeld.status, 409);
      const retire = await server.request('PATCH', '/api/models/iris/versions/1', { json: { retired: true } });
      assert.equal(((await retire.json()) as any).retired, true);
      // Retiring it again (and unretiring iris@2, never retired) changes nothing: 200, no audit entry.
      await unchanged(server, async () => {
        const again = await server.request('PATCH', '/api/models/iris/versions/1', { json: { retired: true } });
        assert.equal(again.status, 200);
        assert.equal(((await again.json()) as any).retired, true);
        assert.equal((await server.request('PATCH', '/api/models/iris/versions/2', { json: { retired: false } })).status, 200);
      });

      // gRPC checks these calls as REST does: SetRetired without `retired` (REST: PATCH {}) and a
      // malformed ref are INVALID_ARGUMENT naming the field, and change nothing.
      const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
      t.after(() => models.close());
      const refused = (field: string) => (error: any) => error.code === 3 && error.details.startsWith(`${field}: `);
      await unchanged(server, async () => {
        await expectError(await server.request('PATCH', '/api/models/iris/versions/1', { json: {} }), 400, 'bad_request', /^body\.retired: /);
        await assert.rejects(models.call('SetRetired', { name: 'iris', version: '1' }), refused('retired'));
        await assert.rejects(models.call('SetRetired', { name: 'iris', version: 'production', retired: true }), refused('version'));
        await expectError(await server.request('GET', '/api/models/iris/versions/.hidden'), 400, 'bad_request', /^path\.ref: must be a version, an alias or "latest"$/);
        await assert.rejects(models.call('GetVersion', { name: 'iris', ref: '.hidden' }), refused('ref'));
      });
      assert.equal((await models.call('GetVersion', { name: 'iris', ref: '' })).version, '2', 'an empty ref is latest');

      const manifest = await server.request('GET', `/api/artifacts/${v2.artifactId}/manifest.json`);
      assert.equal(manifest.headers.get('cache-control'), 'private, max-age=31536000, immutable');
      assert.equal(manifest.status, 200);
      assert.deepEqual(await manifest.json(), pruned.manifest);

      const audit = (await (await server.request('GET', '/api/audit')).json()) as any;
      // Every new file uploaded over HTTP is audited once (re-uploads of a stored blob are not).
      const files = [general, pruned].flatMap((a) => Object.values(a.manifest.files).map((file) => file.sha256));
      assert.deepEqual(
        audit.entries.filter((e: any) => e.action === 'blob.upload').map((e: any) => e.target).sort(),
        [...new Set(files)].sort(),
      );
      assert.deepEqual(
        audit.entries.filter((e: any) => e.action !== 'blob.upload').map((e: any) => [e.action, e.target, e.actor]),
        [
          ['version.retire', 'iris@1', 'token:env-admin'],
          // Moving the production alias by hand gives the version the status production.
          ['version.status', 'iris@2', 'token:env-admin'],
          ['alias.set', 'iris:production', 'token:env-admin'],
          ['version.register', 'iris@2', 'token:env-admin'],
          ['version.register', 'iris@1', 'token:env-admin'],
        ],
      );
      assert.deepEqual(audit.entries.find((e: any) => e.action === 'alias.set').details, { from: null, to: '2' });
      const unretired = await models.call('SetRetired', { name: 'iris', version: '1', retired: false });
      assert.equal(unretired.retired, false);
    });

    test('a retired version never holds an alias, however retiring it and moving an alias onto it interleave', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server } = env;
      const artifact = await makeArtifact(t, { seed: 13, privateKey: env.signer.privateKey });
      assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
      for (let round = 0; round < 30; round++) {
        const [alias, retire] = await Promise.all([
          server.request('PUT', '/api/models/iris/aliases/candidate', { json: { version: '1' } }),
          server.request('PATCH', '/api/models/iris/versions/1', { json: { retired: true } }),
        ]);
        // One of them goes first; the other sees it and is refused.
        assert.deepEqual([alias.status, retire.status].sort(), [200, 409], `round ${round}`);
        const version = (await (await server.request('GET', '/api/models/iris/versions/1')).json()) as any;
        assert.ok(!(version.retired && version.aliases.length > 0), `round ${round}: retired iris@1 holds ${version.aliases}`);
        if (version.retired) assert.equal((await server.request('PATCH', '/api/models/iris/versions/1', { json: { retired: false } })).status, 200);
        else assert.equal((await server.request('DELETE', '/api/models/iris/aliases/candidate')).status, 204);
      }
    });

    test('six pushes to a new model, then six moves of a new alias, at once: all succeed, none is a server error', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server } = env;
      const artifacts = [];
      for (let seed = 20; seed < 26; seed++) {
        const artifact = await makeArtifact(t, { seed, privateKey: env.signer.privateKey });
        await uploadBlobs(server, artifact.dir, artifact.manifest);
        artifacts.push(artifact);
      }
      const pushes = await Promise.all(artifacts.map((artifact) => server.request('POST', '/api/models/iris/versions', { json: { manifest: artifact.manifest } })));
      const pushed = await Promise.all(pushes.map(async (response) => [response.status, await response.text()] as const));
      // Registrations under one model take turns: each distinct artifact gets the next version (on
      // PostgreSQL one failed with a 500 as it created the model, others lost their seq: 409).
      assert.deepEqual(pushed.map(([status, body]) => (status === 201 ? 201 : `${status} ${body}`)), pushed.map(() => 201));
      const versions = ((await (await server.request('GET', '/api/models/iris/versions')).json()) as any).versions.map((v: any) => v.version);
      assert.deepEqual(versions, ['1', '2', '3', '4', '5', '6']);

      const moves = await Promise.all(versions.map((version: string) => server.request('PUT', '/api/models/iris/aliases/candidate', { json: { version } })));
      assert.deepEqual(moves.map((response) => response.status), versions.map(() => 200));
      const holders = ((await (await server.request('GET', '/api/models/iris/versions')).json()) as any).versions.filter((v: any) => v.aliases.includes('candidate'));
      assert.equal(holders.length, 1);
    });

    test('a page after any seq is an answer, however large the seq (PostgreSQL refused one past its INTEGER)', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const artifact = await makeArtifact(t, { seed: 14, privateKey: env.signer.privateKey });
      await pushArtifact(env.server, 'iris', artifact.dir, artifact.manifest);
      for (const after of ['2147483647', '3000000000', String(Number.MAX_SAFE_INTEGER)]) {
        const response = await env.server.request('GET', `/api/models/iris/versions?after=${after}`);
        assert.equal(response.status, 200, after);
        assert.deepEqual(await response.json(), { versions: [], more: false });
      }
      // `more` tells a full page with more to come from the last one.
      const second = await makeArtifact(t, { seed: 15, privateKey: env.signer.privateKey });
      await pushArtifact(env.server, 'iris', second.dir, second.manifest);
      const page = async (query: string) => {
        const body = (await (await env.server.request('GET', `/api/models/iris/versions?${query}`)).json()) as { versions: { version: string }[]; more: boolean };
        return [body.versions.map((version) => version.version), body.more];
      };
      assert.deepEqual(await page('limit=1'), [['1'], true]);
      assert.deepEqual(await page('limit=1&after=1'), [['2'], false]);
      assert.deepEqual(await page('limit=2'), [['1', '2'], false]);
      const models = grpcClient(env.server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
      t.after(() => models.close());
      assert.deepEqual((await models.call('ListVersions', { name: 'iris', after_seq: 2_147_483_647 })).versions, []);
    });

    test('the manifest version is used when given', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const artifact = await makeArtifact(t, { seed: 3, privateKey: env.signer.privateKey, version: '2025.1' });
      const response = await pushArtifact(env.server, 'iris', artifact.dir, artifact.manifest);
      assert.equal(((await response.json()) as any).version, '2025.1');
    });

    describe('bad input answers 4xx and leaves the store unchanged', () => {
      test('malformed JSON', async (t) => {
        const env = await setup(t, engine);
        if (!env) return;
        await unchanged(env.server, async () => {
          const response = await env.server.request('POST', '/api/models/iris/versions', {
            body: '{"manifest": {',
            headers: { 'content-type': 'application/json' },
          });
          await expectError(response, 400, 'bad_request', /malformed JSON/);
        });
      });

      test('unknown and mistyped fields', async (t) => {
        const env = await setup(t, engine);
        if (!env) return;
        const artifact = await makeArtifact(t, { seed: 4, privateKey: env.signer.privateKey });
        await uploadBlobs(env.server, artifact.dir, artifact.manifest);
        await unchanged(env.server, async () => {
          const unknown = await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: artifact.manifest, colour: 'red' } });
          await expectError(unknown, 400, 'bad_request', /body\.colour: unknown field/);
          const mistyped = await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: 'nope' } });
          await expectError(mistyped, 400, 'bad_request', /body\.manifest: /);
          const badManifest = await env.server.request('POST', '/api/models/iris/versions', {
            json: { manifest: { ...artifact.manifest, task: 7 } },
          });
          await expectError(badManifest, 400, 'bad_request', /manifest\.task/);
          const badAlias = await env.server.request('PUT', '/api/models/iris/aliases/production', { json: { version: 2 } });
          await expectError(badAlias, 400, 'bad_request', /body\.version/);
        });
      });

      test('a signed manifest whose lineage ε contradicts its mode is refused by check and push, naming the field', async (t) => {
        const env = await setup(t, engine);
        if (!env) return;
        const artifact = await makeArtifact(t, { seed: 6, privateKey: env.signer.privateKey });
        await uploadBlobs(env.server, artifact.dir, artifact.manifest);
        const cases: [Record<string, unknown>, RegExp][] = [
          [{ epsilon: -3, epsilonMode: 'relative' }, /^manifest\.lineage\.epsilon: is -3, outside \(0, 1\), where a relative ε lies$/],
          [{ epsilon: 1e300, epsilonMode: 'relative' }, /^manifest\.lineage\.epsilon: is 1e\+300, outside \(0, 1\), where a relative ε lies$/],
          [{ epsilon: 0, epsilonMode: 'absolute' }, /^manifest\.lineage\.epsilon: is 0, but an absolute ε is a finite number above 0$/],
          [{ epsilon: 0.5, epsilonMode: null }, /^manifest\.lineage\.epsilonMode: is null, but lineage\.epsilon is 0\.5: give both \(a pruned model\) or neither$/],
          [{ epsilon: null, epsilonMode: 'absolute' }, /^manifest\.lineage\.epsilon: is null, but lineage\.epsilonMode is absolute: give both \(a pruned model\) or neither$/],
        ];
        await unchanged(env.server, async () => {
          for (const [lineage, message] of cases) {
            const { signature: _signature, ...unsigned } = artifact.manifest;
            const manifest = signManifest({ ...unsigned, lineage: { ...unsigned.lineage, ...lineage } } as Manifest, env.signer.privateKey);
            for (const path of ['/api/models/iris/versions/check', '/api/models/iris/versions']) {
              await expectError(await env.server.request('POST', path, { json: { manifest } }), 400, 'bad_request', message);
            }
          }
        });
        // The same manifest with a consistent lineage registers.
        assert.equal((await pushArtifact(env.server, 'iris', artifact.dir, artifact.manifest)).status, 201);
      });

      test('oversized uploads (configurable limits)', async (t) => {
        const env = await setup(t, engine, { maxBlobBytes: 1000, maxBodyBytes: 2000 });
        if (!env) return;
        await unchanged(env.server, async () => {
          const big = new Uint8Array(5000).fill(7);
          const { createHash } = await import('node:crypto');
          const sha = createHash('sha256').update(big).digest('hex');
          const blob = await env.server.request('PUT', `/api/blobs/${sha}`, { body: big, headers: { 'content-type': 'application/octet-stream' } });
          await expectError(blob, 413, 'payload_too_large', /1000 bytes/);
          const body = await env.server.request('POST', '/api/jobs/prune', { json: { name: 'x', label: 'y', data: { csv: 'a'.repeat(5000) } } });
          await expectError(body, 413, 'payload_too_large', /--max-body-bytes/);
        });
      });

      test('path traversal in model and artifact names', async (t) => {
        const env = await setup(t, engine);
        if (!env) return;
        const artifact = await makeArtifact(t, { seed: 5, privateKey: env.signer.privateKey });
        await uploadBlobs(env.server, artifact.dir, artifact.manifest);
        await unchanged(env.server, async () => {
          for (const name of ['.hidden', '..%2F..%2Fetc', 'a%2Fb', '...', '%2E%2E%2Fx']) {
            const response = await env.server.request('POST', `/api/models/${name}/versions`, { json: { manifest: artifact.manifest } });
            await expectError(response, 400, 'bad_request', /path\.name/);
          }
          const blob = await env.server.request('GET', '/api/blobs/..%2F..%2Ffleetprune.sqlite');
          await expectError(blob, 400, 'bad_request', /path\.sha256/);
          const traversingFile = { ...artifact.manifest, files: { ...artifact.manifest.files, '../../escape': artifact.manifest.files['model.onnx']! } };
          const response = await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: traversingFile } });
          await expectError(response, 400, 'bad_request', /unsafe path/);
        });
      });

      test('malformed percent-encoding, corrupt compressed bodies, too deep JSON: 4xx naming the problem; the token is checked first', async (t) => {
        const env = await setup(t, engine);
        if (!env) return;
        const { server } = env;
        await unchanged(server, async () => {
          for (const path of ['/api/devices/%', '/api/blobs/%zz', '/api/models/%E0%A4%A']) {
            for (const token of [undefined, null]) {
              const response = await server.request('GET', path, token === null ? { token } : {});
              await expectError(response, 400, 'bad_request', /^path: malformed percent-encoding \(Failed to decode param '%/);
            }
          }
          const json = { 'content-type': 'application/json' };
          for (const encoding of ['gzip', 'deflate', 'br']) {
            const corrupt = await server.request('POST', '/api/devices', { body: 'garbage, not compressed', headers: { ...json, 'content-encoding': encoding } });
            await expectError(corrupt, 400, 'bad_request', new RegExp(`^body: not valid ${encoding} data \\(`));
          }
          const unknownEncoding = await server.request('POST', '/api/devices', { body: '{}', headers: { ...json, 'content-encoding': 'rot13' } });
          await expectError(unknownEncoding, 415, 'unsupported_media_type', /^body: unsupported content encoding "rot13"$/);
          const deep = await server.request('POST', '/api/devices', { body: `{"id": "dev-1", "labels": ${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`, headers: json });
          await expectError(deep, 400, 'bad_request', /^body: nested deeper than 64 levels$/);
          // Without a valid token the body is never read: 401, not a verdict on the body.
          for (const [body, headers] of [['{"id":', json], ['xx', { ...json, 'content-encoding': 'gzip' }], ['{}', { 'content-type': 'text/plain' }]] as const) {
            for (const token of [null, 'fp_wrong']) {
              await expectError(await server.request('POST', '/api/devices', { token, body, headers }), 401, 'unauthenticated', /./);
            }
          }
        });
        assert.deepEqual(((await (await server.request('GET', '/api/devices')).json()) as any).devices, []);
      });

      test('a duplicate version', async (t) => {
        const env = await setup(t, engine);
        if (!env) return;
        const first = await makeArtifact(t, { seed: 6, privateKey: env.signer.privateKey, version: '1.0' });
        const other = await makeArtifact(t, { seed: 7, privateKey: env.signer.privateKey, version: '1.0' });
        assert.equal((await pushArtifact(env.server, 'iris', first.dir, first.manifest)).status, 201);
        await uploadBlobs(env.server, other.dir, other.manifest);
        await unchanged(env.server, async () => {
          const again = await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: other.manifest } });
          await expectError(again, 409, 'already_exists', /iris@1\.0 already exists/);
          const sameArtifact = await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: first.manifest } });
          await expectError(sameArtifact, 409, 'already_exists', /already registered/);
        });
      });

      test('a tampered or unsigned artifact', async (t) => {
        const env = await setup(t, engine);
        if (!env) return;
        const artifact = await makeArtifact(t, { seed: 8, privateKey: env.signer.privateKey });
        const unsigned = await makeArtifact(t, { seed: 9 });
        const stranger = await makeSigner(t);
        const foreign = await makeArtifact(t, { seed: 10, privateKey: stranger.privateKey });
        await uploadBlobs(env.server, artifact.dir, artifact.manifest);
        await uploadBlobs(env.server, unsigned.dir, unsigned.manifest);
        await uploadBlobs(env.server, foreign.dir, foreign.manifest);
        await unchanged(env.server, async () => {
          const edited = { ...artifact.manifest, metrics: { test: { accuracy: 0.999 } } };
          await expectError(await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: edited } }), 400, 'bad_request', /does not verify/);
          await expectError(await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: unsigned.manifest } }), 400, 'bad_request', /unsigned/);
          await expectError(await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: foreign.manifest } }), 400, 'bad_request', /not trusted/);
          // A blob whose bytes do not hash to its address is refused and not stored.
          const wrong = await env.server.request('PUT', `/api/blobs/${'0'.repeat(64)}`, { body: 'tampered', headers: { 'content-type': 'application/octet-stream' } });
          await expectError(wrong, 400, 'bad_request', /hashes to/);
        });
        const missing = await makeArtifact(t, { seed: 11, privateKey: env.signer.privateKey });
        await unchanged(env.server, async () => {
          const response = await env.server.request('POST', '/api/models/iris/versions', { json: { manifest: missing.manifest } });
          await expectError(response, 400, 'bad_request', /was not uploaded/);
        });
      });

      test('an alias pointing to a version that does not exist', async (t) => {
        const env = await setup(t, engine);
        if (!env) return;
        const artifact = await makeArtifact(t, { seed: 12, privateKey: env.signer.privateKey });
        await pushArtifact(env.server, 'iris', artifact.dir, artifact.manifest);
        await unchanged(env.server, async () => {
          await expectError(await env.server.request('PUT', '/api/models/iris/aliases/production', { json: { version: '9' } }), 404, 'not_found', /no version iris@9/);
          await expectError(await env.server.request('PUT', '/api/models/nope/aliases/production', { json: { version: '1' } }), 404, 'not_found', /no model nope/);
          await expectError(await env.server.request('GET', '/api/models/nope/versions/latest'), 404, 'not_found', /^no model nope$/);
          await expectError(await env.server.request('PUT', '/api/models/iris/aliases/staging', { json: { version: '1' } }), 400, 'bad_request', /path\.alias/);
        });
      });
    });

    test('an upload whose audit entry failed is audited when the blob is sent again, and only once', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server } = env;
      const bytes = Buffer.from(`blob audited late on ${engine}`);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const put = () => server.request('PUT', `/api/blobs/${sha256}`, { body: bytes, headers: { 'content-type': 'application/octet-stream' } });
      const uploads = async () => (await server.server.ctx.store.audit.list({})).filter((entry) => entry.action === 'blob.upload' && entry.target === sha256);
      const audit = server.server.ctx.store.audit;
      const append = audit.append.bind(audit);
      audit.append = async () => {
        throw new Error('audit log unavailable');
      };
      try {
        const failed = await put();
        assert.equal(failed.status, 500);
        assert.doesNotMatch(await failed.text(), /\bat \S+ \(/, 'no stack trace');
      } finally {
        audit.append = append;
      }
      assert.deepEqual(await uploads(), [], 'the blob is stored, its entry is missing');
      assert.equal((await put()).status, 200, 'already stored');
      assert.deepEqual((await uploads()).map((entry) => [entry.actor, entry.details.bytes]), [['token:env-admin', bytes.length]]);
      assert.equal((await put()).status, 200);
      assert.equal((await uploads()).length, 1, 'a re-upload of an audited blob adds no entry');

      // Three uploads of one new blob at once, while writing an entry is slow: the first one's entry
      // is written before the others look for it, so there is one.
      const concurrent = Buffer.from(`blob uploaded three times at once on ${engine}`);
      const concurrentSha = createHash('sha256').update(concurrent).digest('hex');
      audit.append = async (entry) => {
        await new Promise((resolve) => setTimeout(resolve, 100));
        return append(entry);
      };
      try {
        const statuses = await Promise.all(
          [0, 1, 2].map(async () => (await server.request('PUT', `/api/blobs/${concurrentSha}`, { body: concurrent, headers: { 'content-type': 'application/octet-stream' } })).status),
        );
        assert.deepEqual(statuses.sort(), [200, 200, 201]);
      } finally {
        audit.append = append;
      }
      const entries = (await audit.list({})).filter((entry) => entry.action === 'blob.upload' && entry.target === concurrentSha);
      assert.equal(entries.length, 1, 'one entry for one new blob');
    });
  });
}

test('malformed requests are answered 4xx and logged without a stack, never as server errors', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fleetprune-bad-requests-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const server = await spawnServer(t, dataDir);
  const headers = { authorization: `Bearer ${ADMIN_TOKEN}` };
  for (const path of ['/api/devices/%', '/api/blobs/%zz', '/api/models/%E0%A4%A']) {
    assert.equal((await fetch(`${server.baseUrl}${path}`)).status, 400);
  }
  const corrupt = await fetch(`${server.baseUrl}/api/devices`, { method: 'POST', body: 'xx', headers: { ...headers, 'content-type': 'application/json', 'content-encoding': 'gzip' } });
  assert.equal(corrupt.status, 400);
  assert.equal((await fetch(`${server.baseUrl}/healthz`)).status, 200);
  assert.doesNotMatch(server.stderr(), /URIError|Z_DATA_ERROR|"level":50|"stack"/);
});
