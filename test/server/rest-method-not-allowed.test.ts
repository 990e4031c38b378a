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
