import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from './helpers/run-cli.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';
import { finishedJob } from './helpers/job-records.ts';


test('GET /api/jobs takes ?limit as `jobs list --limit` does, and refuses odd query parameters instead of ignoring them', async (t) => {
  const server = (await startTestServer(t))!;
  for (let n = 1; n <= 3; n++) await server.server.ctx.store.jobs.insert(finishedJob('job-list', n));
  const list = async (query: string) => {
    const response = await server.request('GET', `/api/jobs${query}`);
    return { status: response.status, body: (await response.json()) as any };
  };

  const two = await list('?limit=2');
  assert.equal(two.status, 200);
  assert.deepEqual(two.body.jobs.map((job: any) => job.id), ['job-list-3', 'job-list-2'], 'the newest two');
  assert.equal((await list('')).body.jobs.length, 3);
  const cli = await runCli(['jobs', 'list', '--limit', '2', '--json', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(cli.code, 0, cli.stderr);
  // REST also answers how many jobs there are in all (`total`) and whether older ones follow (`more`); so does the CLI's --json.
  assert.deepEqual([two.body.total, two.body.more], [3, true]);
  assert.deepEqual(JSON.parse(cli.stdout), two.body, '--json prints what GET /api/jobs answers');

  for (const [query, message] of [
    ['?limit=0', /^query\.limit: /],
    ['?limit=-5', /^query\.limit: /],
    ['?limit=5000', /^query\.limit: /],
    ['?limit=abc', /^query\.limit: /],
    ['?offset=-1', /^query\.offset: /],
    ['?offset=1000000001', /^query\.offset: /],
    ['?page=2', /^query\.page: unknown field$|^query: .*page/],
  ] as const) {
    const refused = await list(query);
    assert.equal(refused.status, 400, `${query}: ${JSON.stringify(refused.body)}`);
    assert.match(refused.body.error.message, message, query);
  }
});
