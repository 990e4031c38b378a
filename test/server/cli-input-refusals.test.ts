import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { chmod, chown, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import net from 'node:net';
import { test } from 'node:test';
import { isOneLineError, REPO_ROOT, runCli, runCliBatch, tempDir } from '../helpers/cli.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';
import { openStore } from '../../server/store/open-store.ts';

/** Bad input to the CLI: one line, exit 2, nothing left behind or changed, never a hang. */

const bare = ['--http-port', '0', '--grpc-port', '0', '--mqtt-port', '0', '--host', '127.0.0.1'];

test('names every object has (constructor, toString, __proto__) are not commands or data sets: one line, exit 2', async () => {
  // `name in COMMANDS` took an object's inherited members for commands: a TypeError and its stack.
  const names = ['constructor', 'toString', '__proto__', 'hasOwnProperty'];
  const results = await runCliBatch([...names.map((name) => ({ args: [name] })), ...names.map((name) => ({ args: ['demo', '--dataset', name, '--exit-when-done'] }))]);
  names.forEach((name, i) => {
    assert.deepEqual([results[i]!.code, results[i]!.stderr], [2, `fleetprune: unknown command '${name}' (run with --help for usage)\n`], name);
    const demo = results[names.length + i]!;
    assert.deepEqual([demo.code, demo.stderr], [2, `fleetprune: --dataset: unknown data set "${name}" (choose iris, wine, breast_cancer, diabetes)\n`], `demo --dataset ${name}`);
  });
});

test('--help after a command that does not exist names it and exits 2 (it printed the group help and exited 0)', async () => {
  const cases = [
    { args: ['rollout', 'create', '--help'], unknown: 'create' },
    { args: ['nosuch', '-h'], unknown: 'nosuch' },
    { args: ['models', '--help', 'lsit'], unknown: 'lsit' },
  ];
  const results = await runCliBatch([...cases.map(({ args }) => ({ args })), { args: ['rollout', 'start', '--help'] }, { args: ['rollout', 'help', 'start'] }]);
  cases.forEach(({ args, unknown }, i) => {
    assert.equal(results[i]!.code, 2, args.join(' '));
    assert.match(results[i]!.stderr, new RegExp(`^fleetprune: unknown command '${unknown}'`), args.join(' '));
    assert.equal(results[i]!.stdout, '', args.join(' '));
  });
  for (const help of results.slice(cases.length)) {
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: fleetprune rollout start \[options\]/);
  }
});

test('demo --prometheus-url is refused before anything trains without --http-port (Prometheus cannot scrape an ephemeral port) and when Prometheus does not answer', async (t) => {
  const dir = await tempDir(t);
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const [noPort, noAnswer] = await runCliBatch([
    { args: ['demo', '--prometheus-url', `http://127.0.0.1:${port}`, '--data-dir', join(dir, 'a'), '--exit-when-done'] },
    { args: ['demo', '--prometheus-url', `http://127.0.0.1:${port}`, '--http-port', '18081', '--data-dir', join(dir, 'b'), '--exit-when-done'] },
  ]);
  assert.deepEqual([noPort!.code, noPort!.stderr], [2, 'fleetprune: --prometheus-url: needs --http-port, the port of the demo server that Prometheus scrapes (its scrape config names it)\n']);
  assert.equal(noAnswer!.code, 2, noAnswer!.stderr);
  assert.match(noAnswer!.stderr, new RegExp(`^fleetprune: --prometheus-url: Prometheus does not answer \\(prometheus: cannot reach http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*\\)\\n$`));
  assert.equal(noAnswer!.stdout, '', 'nothing started');
});

test('demo --seed out of range is refused before anything starts, and --data-dir stays empty', async (t) => {
  const dir = await tempDir(t);
  for (const seed of ['-1', '1e20', '2147483648']) {
    const dataDir = join(dir, `demo-${seed}`);
    await mkdir(dataDir);
    const run = await runCli(['demo', '--seed', seed, '--data-dir', dataDir, '--exit-when-done'], {}, { timeoutMs: 60_000 });
    assert.equal(run.code, 2, `${seed}: ${run.stderr}`);
    assert.equal(run.stderr, 'fleetprune: --seed: must be between 0 and 2147483647\n');
    assert.deepEqual(await readdir(dataDir), []);
  }
});

test('server: --database-schema without --database-url, and a --tls-cert that is a device or a FIFO, are refused at once', async (t) => {
  const dir = await tempDir(t);
  for (const [flag, url, message] of [
    ['--mqtt-public-url', 'not a url', 'must be an mqtt:// or mqtts:// URL'],
    ['--mqtt-public-url', 'mqtt://', "must name the broker's host (mqtt://HOST:PORT)"],
  ] as const) {
    const refused = await runCli(['server', '--data-dir', join(dir, 'a'), flag, url, ...bare], {}, { timeoutMs: 30_000 });
    assert.equal(refused.code, 2, refused.stderr);
    assert.equal(refused.stderr, `fleetprune: ${flag}: ${message}\n`);
  }
  const schema = await runCli(['server', '--data-dir', join(dir, 'a'), '--database-schema', 'site1', ...bare], {}, { timeoutMs: 30_000 });
  assert.equal(schema.code, 2, schema.stderr);
  assert.equal(schema.stderr, 'fleetprune: --database-schema: only applies with --database-url (PostgreSQL); without it the server keeps its data in SQLite under --data-dir\n');

  const fifo = join(dir, 'cert.fifo');
  await new Promise<void>((resolve, reject) => execFile('mkfifo', [fifo], (error) => (error ? reject(error) : resolve())));
  for (const cert of ['/dev/zero', fifo]) {
    const run = await runCli(['server', '--data-dir', join(dir, 'b'), '--tls-cert', cert, '--tls-key', '/dev/null', ...bare], {}, { timeoutMs: 30_000 });
    assert.equal(run.code, 2, `${cert}: ${run.stderr}`);
    assert.equal(run.stderr, `fleetprune: --tls-cert: ${cert}: not a regular file\n`);
  }
});

test('server on a data dir whose database file is not SQLite: refused on one line naming the file, which is left as it is', async (t) => {
  const dataDir = await tempDir(t);
  const file = join(dataDir, 'fleetprune.sqlite');
  const junk = Buffer.alloc(10_000, 'not a database ');
  await writeFile(file, junk);
  const run = await runCli(['server', '--data-dir', dataDir, ...bare], {}, { timeoutMs: 30_000 });
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stderr, `fleetprune: --data-dir: cannot use the database ${file} (file is not a database); it is left as it is\n`);
  const hash = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
  assert.equal(hash(await readFile(file)), hash(junk));
});

test('server on a data dir whose database has a damaged page where the start reads nothing: refused on one line naming the file and the damage, which is left as it is', async (t) => {
  const dataDir = await tempDir(t);
  const file = join(dataDir, 'fleetprune.sqlite');
  const store = await openStore({ engine: 'sqlite', dataDir });
  // Pages of a table no start reads (as a device report's history), beyond the schema's own pages.
  await store.engine.exec(`CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT); ${Array.from({ length: 200 }, (_, i) => `INSERT INTO filler (body) VALUES ('${String(i).repeat(1000)}');`).join(' ')}`);
  await store.close();
  const bytes = await readFile(file);
  const pageSize = bytes.readUInt16BE(16);
  const pages = bytes.length / pageSize;
  assert.ok(pages > 60, `${pages} pages`);
  bytes.fill(0, (pages - 20) * pageSize, (pages - 18) * pageSize);
  await writeFile(file, bytes);
  // A crash leaves a write-ahead log beside it: a process that wrote and never closed the file.
  const sqlite = join(REPO_ROOT, 'node_modules', 'better-sqlite3', 'lib', 'index.js');
  const crashed = `const Database = require(${JSON.stringify(sqlite)}); const db = new Database(${JSON.stringify(file)}); db.pragma('wal_autocheckpoint = 0'); db.exec("CREATE TABLE late (a TEXT); INSERT INTO late VALUES ('written before the crash')"); process.exit(0);`;
  await new Promise<void>((resolve, reject) => execFile(process.execPath, ['-e', crashed], (error) => (error ? reject(error) : resolve())));
  const hash = (data: Buffer) => createHash('sha256').update(data).digest('hex');
  const [mainBefore, walBefore] = [hash(await readFile(file)), hash(await readFile(`${file}-wal`))];
  const run = await runCli(['server', '--data-dir', dataDir, ...bare], {}, { timeoutMs: 30_000 });
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, new RegExp(`^fleetprune: --data-dir: the database ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is damaged \\(SQLite's quick_check: [^\\n]+\\); restore it from a backup; it is left as it is\\n$`));
  assert.equal(hash(await readFile(file)), mainBefore, 'the file as it was');
  assert.equal(hash(await readFile(`${file}-wal`)), walBefore, 'its write-ahead log as it was, not folded into it');
});

test('a database left with a hot rollback journal (a crash inside a transaction before it was in WAL mode) opens, the journal rolled back, and is checked then', async (t) => {
  const dataDir = await tempDir(t);
  const file = join(dataDir, 'fleetprune.sqlite');
  const sqlite = join(REPO_ROOT, 'node_modules', 'better-sqlite3', 'lib', 'index.js');
  // A rollback-journal database, killed in a transaction whose pages spilled to the file.
  const crashed = `const Database = require(${JSON.stringify(sqlite)}); const db = new Database(${JSON.stringify(file)}); db.pragma('journal_mode = DELETE');
    db.exec('CREATE TABLE t (a TEXT)'); for (let i = 0; i < 200; i++) db.prepare('INSERT INTO t VALUES (?)').run('x'.repeat(1000));
    db.pragma('cache_size = 2'); db.exec('BEGIN'); for (let i = 0; i < 500; i++) db.prepare('UPDATE t SET a = ? WHERE rowid = ?').run('y'.repeat(1000), (i % 200) + 1);
    process.kill(process.pid, 'SIGKILL');`;
  await new Promise<void>((resolve) => execFile(process.execPath, ['-e', crashed], () => resolve()));
  assert.ok((await stat(`${file}-journal`)).size > 0, 'a hot journal was left');
  const store = await openStore({ engine: 'sqlite', dataDir });
  try {
    const rows = await store.engine.all<{ a: string }>('SELECT DISTINCT a FROM t');
    assert.deepEqual(rows.map((row) => row.a), ['x'.repeat(1000)], 'the unfinished transaction rolled back');
  } finally {
    await store.close();
  }
});

test('server on a data dir whose database file it cannot write: refused at start on one line naming the file (SQLite opened it read-only, and the first write failed as an internal error)', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root, to run the server as another user than the file\'s owner');
  const dataDir = await tempDir(t);
  const store = await openStore({ engine: 'sqlite', dataDir });
  await store.close();
  const file = join(dataDir, 'fleetprune.sqlite');
  await chmod(file, 0o644);
  const before = await readFile(file);
  // The directory is the server's user's; the database file stays root's, mode 644 (readable, not writable).
  const nobody = { uid: 65534, gid: 65534 };
  await chown(dataDir, nobody.uid, nobody.gid);
  const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(process.execPath, ['bin/fleetprune.js', 'server', '--data-dir', dataDir, ...bare], { cwd: REPO_ROOT, env: { ...process.env, HOME: '/', FLEETPRUNE_LOG_LEVEL: 'silent' }, timeout: 30_000, ...nobody }, (error, _stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stderr }),
    ),
  );
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stderr, `fleetprune: --data-dir: cannot write the database ${file} (permission denied); it is left as it is\n`);
  assert.deepEqual(await readFile(file), before);
});

test('a new SQLite database (and its WAL and shared-memory files) is readable by its owner alone; one others can read is used, with a warning naming it', async (t) => {
  const dataDir = await tempDir(t);
  const store = await openStore({ engine: 'sqlite', dataDir });
  await store.models.listModels();
  const file = join(dataDir, 'fleetprune.sqlite');
  for (const path of [file, `${file}-wal`, `${file}-shm`]) assert.equal((await stat(path)).mode & 0o777, 0o600, path);
  await store.close();

  await chmod(file, 0o644);
  const warnings: string[] = [];
  const log = { warn: (message: string) => warnings.push(message), info: () => {} } as unknown as import('../../shared/util/log.ts').Logger;
  const again = await openStore({ engine: 'sqlite', dataDir }, { log });
  t.after(() => again.close());
  assert.deepEqual(warnings, [
    `the database ${file} can be read by other users (mode 0644): it holds the audit log and the hashes of every token and device secret; chmod 600 it and its -wal and -shm files`,
  ]);
  assert.equal((await stat(file)).mode & 0o777, 0o644, 'left as it is');

  // A database path that is a symlink to a file not made yet: the file is made there, 0600.
  const linked = await tempDir(t);
  const target = join(await tempDir(t), 'elsewhere.sqlite');
  await symlink(target, join(linked, 'fleetprune.sqlite'));
  const throughLink = await openStore({ engine: 'sqlite', dataDir: linked });
  await throughLink.close();
  assert.equal((await stat(target)).mode & 0o777, 0o600);
});

test('server: a start refused after it made its directories (an unreachable database, a --mosquitto-dir that is a file) removes those it made, and nothing else', async (t) => {
  const dir = await tempDir(t);
  const unreachable = ['--database-url', 'postgres://127.0.0.1:1/test'];
  const fresh = await runCli(['server', '--data-dir', join(dir, 'new', 'server'), ...unreachable, ...bare]);
  assert.deepEqual([fresh.code, fresh.stderr], [2, 'fleetprune: --database-url (or FLEETPRUNE_DATABASE_URL): cannot connect to PostgreSQL (connect ECONNREFUSED 127.0.0.1:1)\n']);
  assert.deepEqual(await readdir(dir), [], 'no data dir left, nor its parent the start created');

  // A data dir that was there keeps what it held, and loses only the blobs/ and jobs/ the start made.
  const kept = join(dir, 'kept');
  await mkdir(join(kept, 'notes'), { recursive: true });
  await writeFile(join(kept, 'notes', 'site.txt'), 'rack 4');
  const existing = await runCli(['server', '--data-dir', kept, ...unreachable, ...bare]);
  assert.equal(existing.code, 2, existing.stderr);
  assert.deepEqual((await readdir(kept)).sort(), ['notes']);
  assert.equal(await readFile(join(kept, 'notes', 'site.txt'), 'utf8'), 'rack 4');

  await writeFile(join(dir, 'a-file'), '');
  const mosquitto = await runCli(['server', '--data-dir', join(dir, 'sqlite'), '--mqtt-url', 'mqtt://127.0.0.1:1', '--mosquitto-dir', join(dir, 'a-file'), ...bare.filter((flag, i) => flag !== '--mqtt-port' && bare[i - 1] !== '--mqtt-port')]);
  assert.deepEqual([mosquitto.code, mosquitto.stderr], [2, `fleetprune: --mosquitto-dir: ${join(dir, 'a-file')} is not a directory\n`]);
  assert.deepEqual((await readdir(dir)).sort(), ['a-file', 'kept']);
});

test('agent --data-dir under /proc is refused at once (mkdir would loop for ever there)', async (t) => {
  const config = join(await tempDir(t), 'agent.json');
  const { publicKey } = generateKeyPairSync('ed25519');
  await writeFile(config, JSON.stringify({
    schema: 1,
    deviceId: 'proc-1',
    labels: {},
    broker: { url: 'mqtt://127.0.0.1:1', username: 'proc-1', password: 'x' },
    server: { url: 'http://127.0.0.1:1', token: 'x' },
    serverPublicKey: publicKey.export({ type: 'spki', format: 'pem' }),
  }));
  const run = await runCli(['agent', '--config', config, '--data-dir', '/proc/fleetprune/data', '--http-port', '0'], {}, { timeoutMs: 30_000 });
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.match(run.stderr, /^fleetprune: --data-dir: cannot create \/proc\/fleetprune\/data \(\/proc is not a writable directory/);
});

test('prune --out a parent of the working directory is refused (the shell would be left in a deleted directory), nothing written', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  const iris = join(REPO_ROOT, 'shared', 'datasets', 'iris.csv');
  // A previous prune's output (which --out may replace), the shell in its general/.
  const first = await runCli(['prune', '--data', iris, '--label', 'species', '--out', out, '--epochs', '1', '--epsilon', '0.5'], {}, { timeoutMs: 120_000 });
  assert.equal(first.code, 0, first.stderr);
  const before = (await readdir(out)).sort();
  const cwd = join(out, 'general');
  const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(process.execPath, [join(REPO_ROOT, 'bin', 'fleetprune.js'), 'prune', '--data', iris, '--label', 'species', '--out', '..', '--epochs', '1'], { cwd, timeout: 60_000 }, (error, _stdout, stderr) =>
      resolve({ code: typeof error?.code === 'number' ? error.code : error ? -1 : 0, stderr }),
    ),
  );
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stderr, `fleetprune: --out: ${out} holds the working directory, which the artifact would replace (leaving this shell in a deleted directory); give --out from outside it\n`);
  assert.deepEqual((await readdir(out)).sort(), before, 'the previous output is still there');
});

test('tokens create --label over its limit is refused with that limit alone', async (t) => {
  const server = await startTestServer(t);
  if (!server) return;
  const run = await runCli(['tokens', 'create', '--role', 'viewer', '--label', 'a'.repeat(600), '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /^fleetprune: .*label: must be at most 200 characters\n$/);
  assert.doesNotMatch(run.stderr, /500/);
});

test('assign --role and tokens create --role outside their choices are refused by the CLI, naming the flag and the choices; help marks required options', async () => {
  const [assign, token, serverHelp, assignHelp] = await runCliBatch([
    { args: ['assign', '--model', 'iris', '--version', '1', '--role', 'bogus', '--all-devices', '--server', '127.0.0.1:1'] },
    { args: ['tokens', 'create', '--role', 'root', '--server', '127.0.0.1:1'] },
    { args: ['server', '--help'] },
    { args: ['assign', '--help'] },
  ]);
  // Refused before any server is asked (127.0.0.1:1 answers nothing).
  assert.deepEqual([assign!.code, assign!.stderr], [2, "fleetprune: option '--role <role>' argument 'bogus' is invalid. must be candidate or active (run with --help for usage)\n"]);
  assert.deepEqual([token!.code, token!.stderr], [2, "fleetprune: option '--role <role>' argument 'root' is invalid. must be device, viewer, operator or admin (run with --help for usage)\n"]);
  const described = (help: string, flag: string) => {
    const text = help.replace(/\s+/g, ' ');
    const at = text.indexOf(` ${flag} <`);
    return text.slice(at, text.indexOf(' --', at + 2));
  };
  assert.match(described(serverHelp!.stdout, '--data-dir'), /\(required\)$/);
  assert.doesNotMatch(described(serverHelp!.stdout, '--host'), /required/);
  for (const flag of ['--model', '--version', '--role']) assert.match(described(assignHelp!.stdout, flag), /\(required\)$/, flag);
  assert.doesNotMatch(described(assignHelp!.stdout, '--selector'), /required/);
});
