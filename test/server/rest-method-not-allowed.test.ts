import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer } from './helpers/test-server.ts';

interface ErrorBody {
  error: { code: string; message: string };
}

test('a path served outside the route specs (/api/openapi.json, /healthz, /metrics, the dashboard\'s pages) answers another method with 405 and Allow, as the API routes do', async (t) => {
  const server = (await startTestServer(t))!;
  for (const path of ['/api/openapi.json', '/healthz', '/metrics', '/dashboard/', '/dashboard/app.js']) {
    assert.equal((await server.request('GET', path)).status, 200, path);
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      // It was a 404 "no route DELETE /healthz", as if the path did not exist.
      const response = await server.request(method, path);
      const body = (await response.json()) as ErrorBody;
      assert.equal(response.status, 405, `${method} ${path}: ${JSON.stringify(body)}`);
      assert.equal(response.headers.get('allow'), 'GET, HEAD, OPTIONS');
      assert.equal(body.error.code, 'method_not_allowed');
      assert.equal(body.error.message, `${method} is not served on ${path}; allowed: GET, HEAD, OPTIONS`);
    }
    const options = await server.request('OPTIONS', path);
    assert.equal(options.status, 204, path);
    assert.equal(options.headers.get('allow'), 'GET, HEAD, OPTIONS');
    assert.equal((await server.request('HEAD', path)).status, 200, `HEAD ${path}`);
  }
  // Paths that do not exist are still 404s, at the app and under /api.
  for (const path of ['/healthz/x', '/nothing', '/api/openapi.json/x', '/api/nothing', '/dashboard/nothing.js']) {
    const response = await server.request('DELETE', path);
    assert.equal(response.status, 404, path);
    assert.equal(((await response.json()) as ErrorBody).error.code, 'not_found');
  }
  // The API's own routes are unchanged.
  const models = await server.request('DELETE', '/api/models');
  assert.equal(models.status, 405);
  assert.equal(models.headers.get('allow'), 'GET, HEAD, OPTIONS');
});

test('a fixed path (POST /api/jobs/prune, POST /api/blobs/gc) asked with another method is a 405 naming what serves it, not a parameterised route refusing the name as an id or hash', async (t) => {
  const server = (await startTestServer(t))!;
  const cases: [string, string, string][] = [
    ['GET', '/api/jobs/prune', 'OPTIONS, POST'],
    ['GET', '/api/blobs/gc', 'OPTIONS, POST'],
    ['PUT', '/api/blobs/gc', 'OPTIONS, POST'],
    ['DELETE', '/api/blobs/gc', 'OPTIONS, POST'],
  ];
  for (const [method, path, allow] of cases) {
    const response = await server.request(method, path);
    const body = (await response.json()) as ErrorBody;
    assert.equal(response.status, 405, `${method} ${path}: ${JSON.stringify(body)}`);
    assert.equal(response.headers.get('allow'), allow, `${method} ${path}`);
    assert.equal(body.error.message, `${method} is not served on ${path}; allowed: ${allow}`);
  }
  assert.equal((await server.request('OPTIONS', '/api/blobs/gc')).headers.get('allow'), 'OPTIONS, POST');
  // A parameter that may take the fixed name still does: a version may be called "check".
  const check = await server.request('GET', '/api/models/iris/versions/check');
  assert.equal(check.status, 404);
  assert.equal(((await check.json()) as ErrorBody).error.message, 'no version iris@check');
  assert.equal((await server.request('OPTIONS', '/api/models/iris/versions/check')).headers.get('allow'), 'GET, HEAD, OPTIONS, PATCH, POST');
  // The fixed paths' own methods and the parameterised routes are served as before.
  assert.equal((await server.request('POST', '/api/blobs/gc', { json: { dryRun: true } })).status, 200);
  assert.equal((await server.request('GET', `/api/blobs/${'a'.repeat(64)}`)).status, 404);
  assert.equal((await server.request('GET', '/api/jobs/job-nope')).status, 404);
});
