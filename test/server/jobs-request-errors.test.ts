import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { runCli } from './helpers/run-cli.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const IRIS = fileURLToPath(new URL('../../shared/datasets/iris.csv', import.meta.url));

test('jobs prune: a refusal of the data names --data FILE or --server-path, not the gRPC field (it said "csv: no label column"); exit 2, nothing stored', async (t) => {
  const server = (await startTestServer(t))!;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const label = await runCli(['jobs', 'prune', '--data', IRIS, '--label', 'nope', ...connection]);
  assert.equal(label.code, 2, label.stderr);
  assert.equal(label.stderr.trim().split('\n').length, 1, label.stderr);
  assert.match(label.stderr, new RegExp(`^fleetprune: --data ${IRIS.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no label column "nope" \\(columns: `));
  const path = await runCli(['jobs', 'prune', '--server-path', 'iris.csv', '--label', 'species', '--task', 'classification', ...connection]);
  assert.equal(path.code, 2, path.stderr);
  assert.match(path.stderr, /^fleetprune: --server-path: server-side data paths are disabled \(start the server with --data-root\)\n$/);
  assert.equal(((await (await server.request('GET', '/api/jobs')).json()) as any).total, 0, 'nothing was stored');
});

test('POST /api/jobs/prune with data missing, with both csv and path, or of the wrong type is a 400 saying what data takes (it said "body.data: Invalid input"); nothing is stored', async (t) => {
  const server = (await startTestServer(t))!;
  const cases: [string, unknown, RegExp][] = [
    ['missing', { name: 'x', label: 'b' }, /^body\.data: required: expected \{"csv": CSV text\} or \{"path": a file under the server --data-root\}, exactly one of them$/],
    ['both', { name: 'x', label: 'b', data: { csv: 'a,b\n1,2\n', path: 'iris.csv' } }, /^body\.data: expected \{"csv": CSV text\} or \{"path": .*\}, exactly one of them$/],
    ['neither', { name: 'x', label: 'b', data: {} }, /^body\.data: expected \{"csv": CSV text\} or \{"path": .*\}, exactly one of them$/],
    ['wrong type', { name: 'x', label: 'b', data: 'a,b\n1,2\n' }, /^body\.data: expected \{"csv": CSV text\} or \{"path": .*\}, exactly one of them$/],
  ];
  for (const [name, json, message] of cases) {
    const response = await server.request('POST', '/api/jobs/prune', { json });
    assert.equal(response.status, 400, name);
    const error = ((await response.json()) as any).error;
    assert.equal(error.code, 'bad_request', name);
    assert.match(error.message, message, name);
  }
  const listed = (await (await server.request('GET', '/api/jobs')).json()) as any;
  assert.equal(listed.total, 0, 'nothing was stored');
});
