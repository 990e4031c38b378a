import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { isWarmable, warmCliRuns } from '../helpers/warm-cli.ts';

// runCli runs short client commands in a warm runner (test/helpers/warm-cli.ts): what a test sees
// must be what a process of the command's own shows.

test('a client command gives the same exit code, stdout and stderr in the warm runner as in a process of its own', async () => {
  const cases: [string[], NodeJS.ProcessEnv][] = [
    [['models', 'list', '--server', '127.0.0.1:1'], {}],
    [['models', 'list', '--server', '127.0.0.1:1', '--token', 'fp_x', '--limit', 'many'], {}],
    [['verify', '/nonexistent-artifact', '--public-key', '/nonexistent-key'], {}],
    [['rollout', 'nope'], {}],
    [['keys', '--help'], {}],
  ];
  for (const [args, env] of cases) {
    const before = warmCliRuns();
    const warm = await runCli(args, env);
    assert.equal(warmCliRuns(), before + 1, `${args.join(' ')} ran warm`);
    const own = await runCli(args, env, { ownProcess: true });
    assert.equal(warmCliRuns(), before + 1, `${args.join(' ')} ran in a process of its own`);
    assert.deepEqual(warm, own, args.join(' '));
  }
});

test('each command runs with its own environment, not the one before it', async () => {
  const connection = ['models', 'list', '--server', '127.0.0.1:1'];
  const unset = await runCli(connection);
  assert.equal(unset.code, 2);
  assert.match(unset.stderr, /no token given/);
  const set = await runCli(connection, { FLEETPRUNE_TOKEN: 'fp_x', FLEETPRUNE_LOG_LEVEL: 'loud' });
  assert.equal(set.code, 2);
  assert.match(set.stderr, /FLEETPRUNE_LOG_LEVEL/, 'the variable given to this command is seen');
  const again = await runCli(connection);
  assert.deepEqual(again, unset, 'and gone for the next one');
});

test('commands started together run at the same time, each with its own output', async () => {
  const args = (n: number) => ['verify', `/nonexistent-${n}`, '--public-key', '/k'];
  const before = warmCliRuns();
  const runs = await Promise.all([1, 2, 3].map((n) => runCli(args(n))));
  assert.equal(warmCliRuns(), before + 1, 'one ran warm, the other two in processes of their own');
  runs.forEach((run, i) => {
    assert.equal(run.code, 2);
    assert.equal(run.stderr, `fleetprune: /nonexistent-${i + 1}: no such artifact directory\n`);
  });
});

test('only short client commands are warm: never a server, an agent, a prune, or a command that follows a rollout or job', () => {
  for (const args of [['models', 'list'], ['rollout', 'status', 'r'], ['jobs', 'prune', '--detach'], ['keys', 'generate']]) assert.ok(isWarmable(args), args.join(' '));
  for (const args of [['server'], ['agent'], ['demo'], ['prune'], ['rollout', 'watch', 'r'], ['rollout', 'start', '-f', 'x', '--watch'], ['jobs', 'prune'], ['jobs', 'watch', 'j'], ['--help']]) {
    assert.ok(!isWarmable(args), args.join(' '));
  }
});
