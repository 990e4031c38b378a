import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT, runCli } from '../helpers/cli.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

/**
 * `tokens list --json` prints a bare list: the `tokens` of GET /api/tokens, as its help says
 * ("the tokens of GET /api/tokens") and scripts rely on. README's --json paragraph, which says
 * --json prints the REST API's shapes, names it beside `devices list` as a bare list; it used to
 * name only `devices list`, so the two disagreed.
 */
test('tokens list --json is the bare list of GET /api/tokens, as its help and README say', async (t) => {
  const server = await startTestServer(t);
  if (!server) return;
  const connection = ['--server', server.grpcAddress, '--token', ADMIN_TOKEN];
  const created = await runCli(['tokens', 'create', '--role', 'viewer', '--label', 'dashboards', ...connection]);
  assert.equal(created.code, 0, created.stderr);

  const listed = await runCli(['tokens', 'list', '--json', ...connection]);
  assert.equal(listed.code, 0, listed.stderr);
  const printed = JSON.parse(listed.stdout) as unknown;
  assert.ok(Array.isArray(printed), `a bare list: ${listed.stdout.slice(0, 200)}`);
  const rest = (await (await server.request('GET', '/api/tokens')).json()) as { tokens: unknown[] };
  assert.deepEqual(printed, rest.tokens);

  const help = await runCli(['tokens', 'list', '--help']);
  assert.match(help.stdout, /--json\s+print JSON \(the tokens of GET \/api\/tokens\)/);

  const readme = (await readFile(join(REPO_ROOT, 'README.md'), 'utf8')).replace(/\s+/g, ' ');
  const paragraph = readme.slice(readme.indexOf('`--json` (on `models list`'), readme.indexOf('`models list NAME`\'s last column'));
  assert.match(paragraph, /prints the REST API's shapes/);
  assert.match(paragraph, /`devices list --json` is a bare list of devices/);
  assert.match(paragraph, /`tokens list --json` is a bare list too: the `tokens` of `GET \/api\/tokens`/, 'README names tokens list --json as a bare list');
});
