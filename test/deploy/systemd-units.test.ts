import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findExecutable } from '../helpers/engines.ts';
import { cliFlags, splitExecStart } from './cli-flags.ts';

/**
 * deploy/systemd: `systemd-analyze verify` (unknown keys, bad ExecStart) when it is installed,
 * and always a structural check: hardening directives, state directory, environment files, and
 * an ExecStart that runs bin/fleetprune.js (the server) or the agent bundle with flags the CLI
 * accepts (from its --help).
 */
const run = promisify(execFile);
const DIR = fileURLToPath(new URL('../../deploy/systemd/', import.meta.url));
/** Each long-running unit: the fleetprune subcommand it runs, and the script that runs it. */
const UNITS = {
  'fleetprune-server.service': { subcommand: 'server', script: /\/opt\/fleetprune\/bin\/fleetprune\.js$/, scriptArgs: ['server'] },
  // The standalone agent bundle (npm run build:agent) takes `fleetprune agent`'s flags.
  'fleetprune-agent@.service': { subcommand: 'agent', script: /\/opt\/fleetprune\/dist\/fleetprune-agent\.mjs$/, scriptArgs: [] },
} as const;

/** `key -> values` of one ini section (repeated keys keep every value). */
function section(text: string, name: string): Map<string, string[]> {
  const result = new Map<string, string[]>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1]!;
      continue;
    }
    if (current !== name) continue;
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not key=value: ${line}`);
    const key = line.slice(0, eq);
    result.set(key, [...(result.get(key) ?? []), line.slice(eq + 1)]);
  }
  return result;
}

for (const [file, { subcommand, script, scriptArgs }] of Object.entries(UNITS)) {
  test(`${file}: hardened, state directory, env file, ExecStart runs ${subcommand} with real flags`, async () => {
    const text = await readFile(join(DIR, file), 'utf8');
    const service = section(text, 'Service');
    const one = (key: string) => service.get(key)?.at(-1);
    assert.equal(one('DynamicUser'), 'yes');
    assert.match(one('StateDirectory') ?? '', /^fleetprune/);
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('CapabilityBoundingSet'), '');
    assert.ok(service.get('EnvironmentFile')!.every((value) => /^-?\/etc\/fleetprune\/[\w%@-]+\.env$/.test(value)), String(service.get('EnvironmentFile')));
    assert.equal(section(text, 'Install').get('WantedBy')?.[0], 'multi-user.target');

    const argv = splitExecStart(one('ExecStart')!);
    assert.equal(argv[0], '/usr/bin/node');
    // The agent bundle's stack traces name the TypeScript sources only with node's --enable-source-maps.
    const at = argv.findIndex((arg, index) => index > 0 && !arg.startsWith('-'));
    assert.deepEqual(argv.slice(1, at), subcommand === 'agent' ? ['--enable-source-maps'] : [], 'node\'s own flags');
    assert.match(argv[at]!, script);
    assert.deepEqual(argv.slice(at + 1, at + 1 + scriptArgs.length), scriptArgs);
    const known = await cliFlags(subcommand);
    const used = argv.slice(at + 1 + scriptArgs.length).filter((arg) => arg.startsWith('--'));
    assert.deepEqual(used.filter((flag) => !known.has(flag)), [], `flags not in fleetprune ${subcommand} --help`);
    assert.ok(used.includes('--data-dir') && argv[argv.indexOf('--data-dir') + 1] === '${STATE_DIRECTORY}', 'data in the StateDirectory');
    if (subcommand === 'agent') assert.ok(used.includes('--config'));
  });
}

test('fleetprune-blob-gc.service and .timer: a hardened oneshot running `blobs gc` with real flags, started daily', async () => {
  const text = await readFile(join(DIR, 'fleetprune-blob-gc.service'), 'utf8');
  const service = section(text, 'Service');
  const one = (key: string) => service.get(key)?.at(-1);
  assert.equal(one('Type'), 'oneshot');
  assert.equal(one('DynamicUser'), 'yes');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('CapabilityBoundingSet'), '');
  assert.equal(one('EnvironmentFile'), '/etc/fleetprune/blob-gc.env', 'the admin token comes from an env file, never the command line');
  const argv = splitExecStart(one('ExecStart')!);
  assert.deepEqual(argv.slice(2, 4), ['blobs', 'gc']);
  assert.ok(!argv.includes('--token'), 'no token on the command line (it would show in ps)');
  const known = await cliFlags('blobs gc');
  const used = argv.slice(4).filter((arg) => arg.startsWith('--'));
  assert.deepEqual(used.filter((flag) => !known.has(flag)), [], 'flags not in fleetprune blobs gc --help');
  assert.ok(!used.includes('--dry-run'));

  const timer = await readFile(join(DIR, 'fleetprune-blob-gc.timer'), 'utf8');
  assert.equal(section(timer, 'Timer').get('Unit')?.[0], 'fleetprune-blob-gc.service');
  assert.equal(section(timer, 'Timer').get('OnCalendar')?.[0], 'daily');
  assert.equal(section(timer, 'Install').get('WantedBy')?.[0], 'timers.target');
});

test('every unit lets node start under its syscall filter: @pkey allowed (V8 calls pkey_alloc), other calls EPERM, not SIGSYS', async () => {
  for (const file of ['fleetprune-server.service', 'fleetprune-agent@.service', 'fleetprune-blob-gc.service']) {
    const service = section(await readFile(join(DIR, file), 'utf8'), 'Service');
    const [allow, ...deny] = service.get('SystemCallFilter') ?? [];
    assert.deepEqual(allow?.split(/\s+/).sort(), ['@pkey', '@system-service'], `${file}: the allow list`);
    assert.ok(deny.every((value) => value.startsWith('~') && !value.includes('@pkey')), `${file}: nothing denies @pkey again`);
    assert.equal(service.get('SystemCallErrorNumber')?.at(-1), 'EPERM', file);
  }
  // The daily collection only orders itself after a local server: it never starts one.
  const gc = section(await readFile(join(DIR, 'fleetprune-blob-gc.service'), 'utf8'), 'Unit');
  assert.equal(gc.get('Requires'), undefined);
  assert.equal(gc.get('Wants'), undefined);
});

test('systemd-analyze verify accepts every unit', async (t) => {
  const analyze = findExecutable(['systemd-analyze']);
  if (!analyze) return t.skip('systemd-analyze is not installed (the structural tests above still ran)');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-systemd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // A template is verified through an instance; ExecStart must point at an executable here.
  const node = findExecutable(['/usr/bin/node']);
  if (!node) return t.skip('/usr/bin/node does not exist here, so ExecStart cannot be verified');
  const sources = ['fleetprune-server.service', 'fleetprune-agent@.service', 'fleetprune-blob-gc.service', 'fleetprune-blob-gc.timer'];
  const copies = sources.map((source) => join(dir, source.replace('@.', '@dev-1.')));
  for (const [i, source] of sources.entries()) await copyFile(join(DIR, source), copies[i]!);
  // The server's drop-ins (Mosquitto, TLS) are verified with it: systemd-analyze reads <unit>.d/ next to the unit.
  await cp(join(DIR, 'fleetprune-server.service.d'), join(dir, 'fleetprune-server.service.d'), { recursive: true });
  for (const unit of copies) {
    let output: string;
    try {
      const { stdout, stderr } = await run(analyze, ['verify', unit], { timeout: 20_000 });
      output = stdout + stderr;
    } catch (error) {
      assert.fail(`systemd-analyze verify ${unit}: ${(error as { stderr?: string }).stderr ?? String(error)}`);
    }
    // Unknown keys and bad values are warnings (exit 0) that name the unit file.
    const own = output.split('\n').filter((line) => line.includes('fleetprune'));
    assert.deepEqual(own, [], `systemd-analyze verify ${unit}`);
  }
});
