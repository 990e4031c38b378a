import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { makeArtifact, makeSigner, pushArtifact } from './helpers/artifacts.ts';
import { startTestServer } from './helpers/test-server.ts';

type Doc = { paths: Record<string, Record<string, any>> };

/** Compiles the document's JSON Schema back into a validator (zod 4's z.fromJSONSchema). */
function validator(schema: unknown): z.ZodType {
  return z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
}

function openApiPathOf(expressPath: string): string {
  return expressPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

test('every express route is in /api/openapi.json with its method, and requests/responses match its schemas', async (t) => {
  const signer = await makeSigner(t);
  const server = (await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath] } }))!;
  const doc = (await (await server.request('GET', '/api/openapi.json', { token: null })).json()) as Doc;
  assert.equal((doc as any).openapi, '3.1.0');

  // The routes the server's modules register with express.
  const served = new Set<string>();
  for (const module of server.server.modules) for (const route of module.routes ?? []) served.add(`${route.method} /api${openApiPathOf(route.path)}`);
  const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method} ${path}`)));
  assert.deepEqual([...documented].sort(), [...served].sort());

  // Probe: an undocumented method on a documented path is not served.
  assert.equal((await server.request('DELETE', '/api/models')).status, 405);

  const pushBody = doc.paths['/api/models/{name}/versions']!.post.requestBody.content['application/json'].schema;
  const artifact = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey });
  const valid = { manifest: artifact.manifest };
  assert.ok(validator(pushBody).safeParse(valid).success, 'the documented schema accepts the valid body');
  for (const invalid of [{ manifest: artifact.manifest, extra: 1 }, { manifest: 'x' }, {}]) {
    assert.equal(validator(pushBody).safeParse(invalid).success, false, `documented schema rejects ${JSON.stringify(invalid).slice(0, 40)}`);
    const response = await server.request('POST', '/api/models/iris/versions', { json: invalid });
    assert.equal(response.status, 400, 'and so does the server');
  }

  const jobBody = doc.paths['/api/jobs/prune']!.post.requestBody.content['application/json'].schema;
  assert.ok(validator(jobBody).safeParse({ name: 'iris', label: 'species', data: { csv: 'a,b\n1,2\n' }, options: { units: 16, epochs: 20 } }).success);
  assert.equal(validator(jobBody).safeParse({ name: 'iris', label: 'species', data: { csv: 'x' }, options: { units: 'many' } }).success, false);
  // Whole numbers are documented as integers (a refine is invisible to the JSON schema: it said number).
  for (const options of [{ units: 16.5 }, { seed: 0.5 }, { batchSize: 32.25 }]) {
    assert.equal(validator(jobBody).safeParse({ name: 'iris', label: 'species', data: { csv: 'x' }, options }).success, false, `the document refuses ${JSON.stringify(options)}`);
  }
  assert.equal(validator(jobBody).safeParse({ name: 'iris', label: 'species', data: { url: 'http://x' } }).success, false);

  // Real responses validate against the documented response schemas.
  const pushed = await pushArtifact(server, 'iris', artifact.dir, artifact.manifest);
  const responseSchema = (path: string, method: string, status: number) => validator(doc.paths[path]![method].responses[status].content['application/json'].schema);
  assert.ok(responseSchema('/api/models/{name}/versions', 'post', 201).safeParse(await pushed.json()).success);
  const checks: [string, string, string, number][] = [
    ['/api/models', '/api/models', 'get', 200],
    ['/api/models/iris', '/api/models/{name}', 'get', 200],
    ['/api/models/iris/versions', '/api/models/{name}/versions', 'get', 200],
    ['/api/models/iris/versions/latest', '/api/models/{name}/versions/{ref}', 'get', 200],
    ['/api/audit', '/api/audit', 'get', 200],
    ['/api/tokens', '/api/tokens', 'get', 200],
    ['/api/jobs', '/api/jobs', 'get', 200],
  ];
  for (const [url, path, method, status] of checks) {
    const response = await server.request(method.toUpperCase(), url);
    assert.equal(response.status, status, url);
    const parsed = responseSchema(path, method, status).safeParse(await response.json());
    assert.ok(parsed.success, `${url}: ${parsed.success ? '' : parsed.error.message}`);
  }
  // A job's states, `cancelled` (a cancel took effect) apart from `failed`.
  const jobSchema = doc.paths['/api/jobs/{id}']!.get.responses[200].content['application/json'].schema;
  assert.deepEqual(jobSchema.properties.state.enum, ['queued', 'running', 'succeeded', 'failed', 'cancelled']);
  const cancelledJob = { id: 'job-1', kind: 'prune', state: 'cancelled', request: { name: 'iris' }, progress: null, result: null, error: 'cancelled by token:t', createdAt: 'x', updatedAt: 'x', createdBy: 'token:t', node: 'n' };
  assert.ok(validator(jobSchema).safeParse(cancelledJob).success);
  assert.ok(validator(doc.paths['/api/jobs/{id}/cancel']!.post.responses[200].content['application/json'].schema).safeParse(cancelledJob).success);
  // A real job, as the job routes show it (with its request), then cancelled.
  const iris = 'sepal_length,sepal_width,petal_length,petal_width,species\n' + Array.from({ length: 30 }, (_, i) => `${5 + (i % 3)},${3 + (i % 2)},${1 + (i % 5)},${i % 3},${['a', 'b', 'c'][i % 3]}`).join('\n') + '\n';
  const queued = await server.request('POST', '/api/jobs/prune', { json: { name: 'openapi', label: 'species', data: { csv: iris }, options: { epochs: 1 } } });
  assert.equal(queued.status, 202, await queued.clone().text());
  const job = await queued.json();
  const queuedParsed = responseSchema('/api/jobs/prune', 'post', 202).safeParse(job);
  assert.ok(queuedParsed.success, queuedParsed.success ? '' : queuedParsed.error.message);
  assert.equal(job.request.label, 'species');
  for (const [url, path] of [[`/api/jobs/${job.id}`, '/api/jobs/{id}'], ['/api/jobs', '/api/jobs']] as const) {
    const parsed = responseSchema(path, 'get', 200).safeParse(await (await server.request('GET', url)).json());
    assert.ok(parsed.success, `${url}: ${parsed.success ? '' : parsed.error.message}`);
  }
  const cancelled = await server.request('POST', `/api/jobs/${job.id}/cancel`);
  assert.equal(cancelled.status, 200, await cancelled.clone().text());
  const errorSchema = validator(doc.paths['/api/models']!.get.responses.default.content['application/json'].schema);
  assert.ok(errorSchema.safeParse(await (await server.request('GET', '/api/models', { token: null })).json()).success);

  // Whole-number query parameters are integers with their bounds and default, as a client sends
  // them (not the digit string the server parses); no digit pattern is left anywhere.
  const parameter = (path: string, name: string) => doc.paths[path]!.get.parameters.find((entry: { name: string }) => entry.name === name).schema;
  assert.deepEqual(parameter('/api/devices', 'limit'), { type: 'integer', minimum: 1, maximum: 5000, default: 1000 });
  assert.deepEqual(parameter('/api/audit', 'limit'), { type: 'integer', minimum: 1, maximum: 1000 });
  assert.deepEqual(parameter('/api/audit', 'before'), { type: 'integer', minimum: 1 });
  // (A digits-only pattern, `^\\d+$` or `^\\d{1,6}$`, is such a parameter left as a string.)
  assert.doesNotMatch(JSON.stringify(doc), /"pattern":"\^\\\\d(\+|\{[\d,]+\})\$"/);
  assert.deepEqual(doc.paths['/api/rollouts/{id}/promote']!.post.parameters.find((entry: { name: string }) => entry.name === 'fromStepIndex').schema, { type: 'integer', minimum: 0, maximum: 999999 });
  // A refusal a route declares itself carries the error body, as the server sends it.
  const notFound = doc.paths['/api/rollouts']!.get.responses['404'];
  const refused = await server.request('GET', '/api/rollouts?containing=ro-nope');
  assert.equal(refused.status, 404);
  assert.ok(validator(notFound.content['application/json'].schema).safeParse(await refused.json()).success);
  // The rollout spec as JSON is an object (a client generated from the document sent a JSON string, refused); as YAML, text.
  const spec = doc.paths['/api/rollouts']!.post.requestBody.content;
  assert.equal(spec['application/json'].schema.type, 'object');
  assert.deepEqual(spec['application/yaml'].schema, { type: 'string', contentMediaType: 'application/yaml' });
  const json = validator(spec['application/json'].schema);
  assert.ok(json.safeParse({ model: 'iris', candidateVersion: '2', steps: [{ setWeight: 100 }] }).success);
  assert.equal(json.safeParse('model: iris').success, false);
  // A body whose fields are all optional (an empty one reads as {}) is not required; one with required fields is.
  assert.equal(doc.paths['/api/blobs/gc']!.post.requestBody.required, false);
  assert.equal(doc.paths['/api/tokens']!.post.requestBody.required, true);
  // The refusals a route may give are listed with the error body, whose code is one of those the server sends.
  const getRollout = doc.paths['/api/rollouts/{id}']!.get.responses;
  assert.deepEqual(Object.keys(getRollout).filter((status) => /^4|^5/.test(status)).sort(), ['400', '401', '403', '404', '503']);
  // A route without query fields still refuses one (400), and says so.
  assert.ok('400' in doc.paths['/api/whoami']!.get.responses);
  assert.equal((await server.request('GET', '/api/whoami?bogus=1')).status, 400);
  const missing = await server.request('GET', '/api/rollouts/ro-000000000000');
  assert.equal(missing.status, 404);
  assert.ok(validator(getRollout['404'].content['application/json'].schema).safeParse(await missing.json()).success);
  const codes = getRollout['404'].content['application/json'].schema.properties.error.properties.code.enum as string[];
  for (const code of ['bad_request', 'conflict', 'too_many_requests', 'retry_later', 'internal']) assert.ok(codes.includes(code), code);
  // A blob's bytes are taken whatever their Content-Type says.
  assert.ok('*/*' in doc.paths['/api/blobs/{sha256}']!.put.requestBody.content);
});
