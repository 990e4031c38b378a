import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { generateSigningKeys, keyId, loadPrivateKey, loadPublicKey } from '../../shared/artifact/signing-keys.ts';
import { UserError } from '../../shared/util/errors.ts';
import { isOneLineError, runCli, tempDir } from '../helpers/cli.ts';
import { hookFs, hookUnownedCalls } from '../server/helpers/fs-interleaving.ts';
import { mountTmpfs } from '../helpers/tmpfs.ts';

test('keys generate writes a 0600 private key and a public key, and prints the paths and key id', async (t) => {
  const dir = join(await tempDir(t), 'keys');
  const result = await runCli(['keys', 'generate', '--out', dir]);
  assert.equal(result.stderr, '');
  assert.equal(result.code, 0);

  const privatePath = join(dir, 'signing.key');
  const publicPath = join(dir, 'signing.pub');
  assert.equal((await stat(privatePath)).mode & 0o777, 0o600);
  assert.match(await readFile(privatePath, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
  assert.match(await readFile(publicPath, 'utf8'), /^-----BEGIN PUBLIC KEY-----\n/);

  const publicKey = await loadPublicKey(publicPath);
  const privateKey = await loadPrivateKey(privatePath);
  assert.equal(keyId(privateKey), keyId(publicKey));
  assert.match(keyId(publicKey), /^[0-9a-f]{16}$/);
  assert.equal(result.stdout, `private key: ${privatePath}\npublic key:  ${publicPath}\nkey id:      ${keyId(publicKey)}\n`);
});

test('keys generate refuses to overwrite without --force (exit 2, one line) and replaces with --force', async (t) => {
  const dir = join(await tempDir(t), 'keys');
  assert.equal((await runCli(['keys', 'generate', '--out', dir])).code, 0);
  const firstKey = await readFile(join(dir, 'signing.key'), 'utf8');

  const again = await runCli(['keys', 'generate', '--out', dir]);
  assert.equal(again.code, 2);
  assert.equal(again.stdout, '');
  assert.ok(isOneLineError(again.stderr));
  assert.match(again.stderr, /^fleetprune: .*signing\.key and .*signing\.pub already exist; refusing to overwrite \(use --force\)\n$/);
  assert.equal(await readFile(join(dir, 'signing.key'), 'utf8'), firstKey);

  const forced = await runCli(['keys', 'generate', '--out', dir, '--force']);
  assert.equal(forced.code, 0);
  assert.notEqual(await readFile(join(dir, 'signing.key'), 'utf8'), firstKey);
  assert.equal((await stat(join(dir, 'signing.key'))).mode & 0o777, 0o600);
});

test('loading a missing or unparseable key is a UserError naming the file', async (t) => {
  const dir = await tempDir(t);
  const garbage = join(dir, 'garbage.pem');
  await writeFile(garbage, 'not a key');
  await assert.rejects(loadPublicKey(join(dir, 'absent.pub')), (error: unknown) => error instanceof UserError && error.message.includes('absent.pub'));
  await assert.rejects(loadPrivateKey(garbage), (error: unknown) => error instanceof UserError && error.message.startsWith(`${garbage}: not a PEM private key`));
  await assert.rejects(loadPublicKey(garbage), (error: unknown) => error instanceof UserError && error.message.startsWith(`${garbage}: not a PEM public key`));
  // ssh-keygen's formats were "not a PEM private key (error:1E08010C:DECODER routines::unsupported)".
  const sshPrivate = join(dir, 'id_ed25519');
  await writeFile(sshPrivate, '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n');
  const sshPublic = join(dir, 'id_ed25519.pub');
  await writeFile(sshPublic, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0 user@host\n');
  await assert.rejects(loadPrivateKey(sshPrivate), new UserError(`${sshPrivate}: is an OpenSSH key; fleetprune reads PEM keys, as \`fleetprune keys generate\` writes them (signing.key)`));
  await assert.rejects(loadPublicKey(sshPublic), new UserError(`${sshPublic}: is an OpenSSH key; fleetprune reads PEM keys, as \`fleetprune keys generate\` writes them (signing.pub)`));
});

test('a key file of two keys is refused, not read as its first; an empty or cut-short one is named so, not by a decoder error code', async (t) => {
  const dir = await tempDir(t);
  const pem = () => generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const [first, second] = [pem(), pem()];
  const both = join(dir, 'both.pub');
  await writeFile(both, `${first}${second}`);
  await assert.rejects(loadPublicKey(both), new UserError(`${both}: not a PEM public key: it holds 2 PEM blocks, where one key belongs (give each key its own file)`));
  const privatePem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const twoPrivate = join(dir, 'two.key');
  await writeFile(twoPrivate, `${privatePem}${privatePem}`);
  await assert.rejects(loadPrivateKey(twoPrivate), new UserError(`${twoPrivate}: not a PEM private key: it holds 2 PEM blocks, where one key belongs (give each key its own file)`));
  const empty = join(dir, 'empty.pub');
  await writeFile(empty, '\n');
  await assert.rejects(loadPublicKey(empty), new UserError(`${empty}: not a PEM public key: it is empty`));
  const cut = join(dir, 'cut.key');
  await writeFile(cut, privatePem.split('\n').slice(0, 2).join('\n'));
  await assert.rejects(loadPrivateKey(cut), new UserError(`${cut}: not a PEM private key: it is cut short: its PEM block has no -----END …----- line`));
  // One key still loads (with a blank line or a comment around it).
  assert.equal(keyId(await loadPublicKey(await writeFile(join(dir, 'one.pub'), `\n${first}\n`).then(() => join(dir, 'one.pub')))).length, 16);
});

test('keys generate --force that cannot replace a key file leaves the old pair whole', async (t) => {
  const dir = join(await tempDir(t), 'keys');
  assert.equal((await runCli(['keys', 'generate', '--out', dir])).code, 0);
  const privatePath = join(dir, 'signing.key');
  const publicPath = join(dir, 'signing.pub');
  const oldPrivate = await readFile(privatePath, 'utf8');
  const oldPublic = await readFile(publicPath, 'utf8');

  // signing.pub replaced by a directory: nothing may be deleted or half-replaced.
  await rm(publicPath);
  await mkdir(publicPath);
  const refused = await runCli(['keys', 'generate', '--out', dir, '--force']);
  assert.equal(refused.code, 2, refused.stderr);
  assert.ok(isOneLineError(refused.stderr), refused.stderr);
  assert.equal(refused.stderr, `fleetprune: ${publicPath} is a directory; refusing to replace it with a key file\n`);
  assert.equal(await readFile(privatePath, 'utf8'), oldPrivate, 'the private key is untouched');
  assert.ok((await stat(publicPath)).isDirectory());
  assert.deepEqual((await readdir(dir)).sort(), ['signing.key', 'signing.pub'], 'no staged files are left behind');

  // Once the path is free again, --force replaces both files (private key still 0600).
  await rmdir(publicPath);
  await writeFile(publicPath, oldPublic);
  const forced = await runCli(['keys', 'generate', '--out', dir, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(await readFile(privatePath, 'utf8'), oldPrivate);
  assert.equal((await stat(privatePath)).mode & 0o777, 0o600);
  assert.equal(keyId(await loadPrivateKey(privatePath)), keyId(await loadPublicKey(publicPath)), 'the new files are one pair');
  assert.deepEqual((await readdir(dir)).sort(), ['signing.key', 'signing.pub']);
});

test('keys generate --out where no directory can be made (a file, /proc) fails at once: exit 2, one line naming --out', async (t) => {
  const file = join(await tempDir(t), 'a-file');
  await writeFile(file, 'x');
  const cases: [string, RegExp][] = [
    [file, /^fleetprune: --out: .*a-file is not a directory\n$/],
    [join(file, 'keys'), /^fleetprune: --out: cannot create .*a-file\/keys \(a parent is not a directory\)\n$/],
    // mkdir({recursive}) under /proc loops forever on ENOENT: this hung at 100% CPU.
    ['/proc/fleetprune-keys', /^fleetprune: --out: cannot create \/proc\/fleetprune-keys /],
    // An unset shell variable: the message named a directory called "" ("cannot create  (no such file or directory)").
    ['', /^fleetprune: --out: the path is empty\n$/],
  ];
  for (const [out, message] of cases) {
    const result = await runCli(['keys', 'generate', '--out', out], {}, { timeoutMs: 20_000 });
    assert.equal(result.code, 2, `${out}: ${result.stderr}`);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr, message);
  }
  assert.equal(await readFile(file, 'utf8'), 'x');
});

test('a key path that is a FIFO, an oversized file or an encrypted key: exit 2 at once, one line saying what it is', async (t) => {
  const dir = await tempDir(t);
  const fifo = join(dir, 'key.fifo');
  execFileSync('mkfifo', [fifo]);
  const big = join(dir, 'big.key');
  await writeFile(big, Buffer.alloc(1024 * 1024, 0x41));
  const encrypted = join(dir, 'encrypted.key');
  const pair = generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  await writeFile(encrypted, pair.privateKey);
  const prune = (key: string) => ['prune', '--data', 'shared/datasets/iris.csv', '--label', 'species', '--sign-key', key, '--out', join(dir, 'out')];
  const cases: [string[], RegExp][] = [
    // readFile on a FIFO nobody writes to blocked forever.
    [prune(fifo), /^fleetprune: --sign-key: cannot read private key .*key\.fifo: not a regular file\n$/],
    [['verify', dir, '--public-key', fifo], /^fleetprune: --public-key: cannot read public key .*key\.fifo: not a regular file\n$/],
    [prune(big), /^fleetprune: --sign-key: .*big\.key: not a PEM private key \(1048576 bytes; a key file is far smaller\)\n$/],
    // OpenSSL's answer was "interrupted or cancelled".
    [prune(encrypted), /^fleetprune: --sign-key: .*encrypted\.key: is an encrypted private key; signing needs an unencrypted one/],
  ];
  for (const [args, message] of cases) {
    const result = await runCli(args, {}, { timeoutMs: 20_000 });
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr, message);
  }
  await assert.rejects(stat(join(dir, 'out')), 'nothing was written');
});

/** Fails the renames whose destination `failing` picks (EIO), from the in-process code, for the rest of the test. */
function failRenames(t: TestContext, failing: (to: string) => boolean): { failed: string[] } {
  hookFs(t);
  const failed: string[] = [];
  hookUnownedCalls({
    before: async (call) => {
      if (call.fn !== 'rename' || !failing(call.args[1] as string)) return;
      failed.push(call.args[1] as string);
      throw Object.assign(new Error(`EIO: i/o error, rename '${call.args[0]}' -> '${call.args[1]}'`), { code: 'EIO', errno: -5, syscall: 'rename' });
    },
  });
  return { failed };
}

test('keys generate --force whose public key cannot be put in place leaves the old pair whole (it left the new private key beside the old public key)', async (t) => {
  const dir = join(await tempDir(t), 'keys');
  const old = await generateSigningKeys(dir);
  const oldPrivate = await readFile(old.privateKeyPath, 'utf8');
  const oldPublic = await readFile(old.publicKeyPath, 'utf8');
  const { failed } = failRenames(t, (to) => to === old.publicKeyPath);

  await assert.rejects(
    generateSigningKeys(dir, { force: true }),
    (error: unknown) => error instanceof UserError && error.message.startsWith(`cannot write signing keys to ${dir}: EIO: i/o error, rename `) && !error.message.includes('\n'),
  );
  assert.deepEqual(failed, [old.publicKeyPath], 'the failure was never injected');
  assert.equal(await readFile(old.privateKeyPath, 'utf8'), oldPrivate, 'the private key was replaced, the public one not: a mismatched pair');
  assert.equal(await readFile(old.publicKeyPath, 'utf8'), oldPublic);
  assert.equal((await stat(old.privateKeyPath)).mode & 0o777, 0o600);
  assert.deepEqual((await readdir(dir)).sort(), ['signing.key', 'signing.pub'], 'no staged files are left behind');
});

test('keys generate --force that cannot put the old private key back either names where it is, and keeps it there', async (t) => {
  const dir = join(await tempDir(t), 'keys');
  const old = await generateSigningKeys(dir);
  const oldPrivate = await readFile(old.privateKeyPath, 'utf8');
  const oldPublic = await readFile(old.publicKeyPath, 'utf8');
  // The public key's rename fails, and so does the one that would put the old private key back.
  let privateRenames = 0;
  failRenames(t, (to) => to === old.publicKeyPath || (to === old.privateKeyPath && ++privateRenames === 2));

  let message = '';
  await assert.rejects(generateSigningKeys(dir, { force: true }), (error: unknown) => error instanceof UserError && Boolean((message = error.message)));
  const copy = /the old private key is in (\S+) \(/.exec(message)?.[1];
  assert.ok(copy, `the message names no copy of the old private key: ${message}`);
  assert.match(message, new RegExp(`^cannot write signing keys to ${dir}: EIO: .*; the old private key could not be put back`));
  assert.equal(message.includes('\n'), false, message);
  assert.equal(await readFile(copy, 'utf8'), oldPrivate);
  assert.equal((await stat(copy)).mode & 0o777, 0o600);
  assert.equal(await readFile(old.publicKeyPath, 'utf8'), oldPublic);
});

test('keys generate --force where a key file is a FIFO: exit 2 at once, one line, nothing staged (it blocked forever reading the old key, beside a staged new private key)', async (t) => {
  for (const name of ['signing.key', 'signing.pub']) {
    const dir = join(await tempDir(t), 'keys');
    await mkdir(dir);
    const fifo = join(dir, name);
    execFileSync('mkfifo', [fifo]);
    const result = await runCli(['keys', 'generate', '--out', dir, '--force'], {}, { timeoutMs: 20_000 });
    assert.equal(result.code, 2, `${name}: ${result.stderr}`);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.equal(result.stderr, `fleetprune: ${fifo} is a FIFO, not a regular file; refusing to replace it with a key file\n`);
    assert.deepEqual(await readdir(dir), [name], 'nothing staged, nothing replaced');
    assert.ok((await stat(fifo)).isFIFO());
  }
});

test('keys generate --force where the old private key turns into a FIFO after it was checked: refused on the open file, nothing staged', async (t) => {
  const dir = join(await tempDir(t), 'keys');
  const old = await generateSigningKeys(dir);
  const oldPublic = await readFile(old.publicKeyPath, 'utf8');
  hookFs(t);
  let swapped = false;
  hookUnownedCalls({
    before: async (call) => {
      if (call.fn !== 'open' || call.args[0] !== old.privateKeyPath || swapped) return;
      swapped = true;
      await rm(old.privateKeyPath);
      execFileSync('mkfifo', [old.privateKeyPath]);
    },
  });
  await assert.rejects(
    generateSigningKeys(dir, { force: true }),
    new UserError(`${old.privateKeyPath} is a FIFO, not a regular file; refusing to replace it with a key file`),
  );
  assert.ok(swapped, 'the old private key was never opened');
  assert.deepEqual((await readdir(dir)).sort(), ['signing.key', 'signing.pub'], 'no staged files are left behind');
  assert.ok((await stat(old.privateKeyPath)).isFIFO());
  assert.equal(await readFile(old.publicKeyPath, 'utf8'), oldPublic);
});

test('keys generate on a disk that takes a directory but not the keys (full) leaves no directory it made behind, and nothing it did not make goes', async (t) => {
  const mount = await mountTmpfs(t, 'keys-full', '64k');
  if (!mount) return t.skip('cannot mount a tmpfs here (needs root)');
  await mkdir(join(mount, 'kept'));
  await writeFile(join(mount, 'filler'), Buffer.alloc(256 * 1024)).catch(() => {});
  await assert.rejects(generateSigningKeys(join(mount, 'kept', 'new', 'keys')), (error: unknown) => error instanceof UserError && /^cannot write signing keys to .*\/kept\/new\/keys: .*ENOSPC/.test(error.message));
  assert.deepEqual((await readdir(mount)).sort(), ['filler', 'kept']);
  assert.deepEqual(await readdir(join(mount, 'kept')), [], 'the directories it made (new/keys) are gone; the one that was there stays');
});
