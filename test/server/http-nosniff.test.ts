import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer } from './helpers/test-server.ts';

test('every HTTP answer says X-Content-Type-Options: nosniff: API JSON and errors, health, metrics, the dashboard and its assets, redirects', async (t) => {
  const server = await startTestServer(t);
  if (!server) return;
  const answers: [string, Promise<Response>][] = [
    ['GET /healthz', fetch(`${server.baseUrl}/healthz`)],
    ['GET /metrics', fetch(`${server.baseUrl}/metrics`)],
    ['GET /api/openapi.json', fetch(`${server.baseUrl}/api/openapi.json`)],
    ['GET /api/rollouts (admin)', server.request('GET', '/api/rollouts')],
    ['GET /api/rollouts (no token: 401)', server.request('GET', '/api/rollouts', { token: null })],
    ['GET /api/rollouts/bad.id (400)', server.request('GET', '/api/rollouts/bad.id')],
    ['GET /api/<script> (404)', fetch(`${server.baseUrl}/api/%3Cscript%3Ealert(1)%3C%2Fscript%3E`)],
    ['OPTIONS /api/rollouts', fetch(`${server.baseUrl}/api/rollouts`, { method: 'OPTIONS' })],
    ['GET /nowhere (404)', fetch(`${server.baseUrl}/nowhere`)],
    ['GET / (redirect)', fetch(`${server.baseUrl}/`, { redirect: 'manual' })],
    ['GET /dashboard/', fetch(`${server.baseUrl}/dashboard/`)],
    ['GET /dashboard/app.js', fetch(`${server.baseUrl}/dashboard/app.js`)],
    ['GET /dashboard/app.css', fetch(`${server.baseUrl}/dashboard/app.css`)],
  ];
  const seen: string[] = [];
  for (const [what, answer] of answers) {
    const response = await answer;
    await response.arrayBuffer();
    seen.push(`${what}: ${response.status} ${response.headers.get('x-content-type-options')}`);
  }
  assert.deepEqual(
    seen.filter((line) => !line.endsWith(' nosniff')),
    [],
    `answers without nosniff, of:\n${seen.join('\n')}`,
  );
});
