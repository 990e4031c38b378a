import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, realpath, rename, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { generateSigningKeys, keyId, loadPrivateKey, loadPublicKey } from '../../shared/artifact/signing-keys.ts';
import { verifyArtifact, verifyPruneOutput } from '../../shared/artifact/verify-artifact.ts';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { SAMPLE_TRAINING, writeSampleArtifact } from './fixtures.ts';

let keyRoot: string;
let privateKey: KeyObject;
let publicKey: KeyObject;
let otherPublicKeyPath: string;

before(async () => {
  keyRoot = await mkdtemp(join(tmpdir(), 'fleetprune-keys-'));
  const signer = await generateSigningKeys(join(keyRoot, 'signer'));
  const other = await generateSigningKeys(join(keyRoot, 'other'));
  privateKey = await loadPrivateKey(signer.privateKeyPath);
  publicKey = await loadPublicKey(signer.publicKeyPath);
  otherPublicKeyPath = other.publicKeyPath;
});

after(() => rm(keyRoot, { recursive: true, force: true }));

async function signedArtifact(t: TestContext, signed = true): Promise<string> {
  const dir = join(await tempDir(t), 'model');
  await writeSampleArtifact(dir, signed ? privateKey : undefined);
  return dir;
}

async function editManifest(dir: string, edit: (manifest: Record<string, any>) => void): Promise<void> {
  const path = join(dir, 'manifest.json');
  const manifest = JSON.parse(await readFile(path, 'utf8'));
  edit(manifest);
  await writeFile(path, JSON.stringify(manifest, null, 2));
}

/** verifyPruneOutput reports exactly `expected`, and the CLI exits 1 printing each as `fleetprune: verify failed: …`. */
async function assertFails(dir: string, expected: (string | RegExp)[], publicKeyPath?: string): Promise<void> {
  const key = publicKeyPath ? await loadPublicKey(publicKeyPath) : publicKey;
  const result = await verifyPruneOutput(dir, key);
  assert.equal(result.ok, false);
  assert.equal(result.failures.length, expected.length, `failures: ${JSON.stringify(result.failures)}`);
  expected.forEach((pattern, i) => {
    if (typeof pattern === 'string') assert.equal(result.failures[i], pattern);
    else assert.match(result.failures[i]!, pattern);
  });

  const cli = await runCli(['verify', dir, '--public-key', publicKeyPath ?? join(keyRoot, 'signer', 'signing.pub')]);
  assert.equal(cli.code, 1);
  assert.equal(cli.stdout, '');
  const lines = cli.stderr.trimEnd().split('\n');
  assert.deepEqual(lines.slice(0, -1), result.failures.map((failure) => `fleetprune: verify failed: ${failure}`));
  assert.equal(lines.at(-1), `fleetprune: verify failed: ${dir}: ${expected.length} check(s) failed`);
  assert.doesNotMatch(cli.stderr, /\n\s+at /, 'no stack trace');
}

/** A pruned artifact with its parent in DIR/general, as prune writes them; returns DIR and both ids. */
async function prunedWithParent(t: TestContext): Promise<{ dir: string; childId: string; parentId: string }> {
  const root = await tempDir(t);
  const parent = await writeSampleArtifact(join(root, 'parent'), privateKey);
  const dir = join(root, 'model');
  const child = await writeSampleArtifact(dir, privateKey, artifactId(parent));
  await rename(join(root, 'parent'), join(dir, 'general'));
  return { dir, childId: artifactId(child), parentId: artifactId(parent) };
}

test('verify checks the parent prune wrote in DIR/general too: its files, its signature, and that it is the parent the lineage names', async (t) => {
  const { dir, childId, parentId } = await prunedWithParent(t);
  const ok = await runCli(['verify', dir, '--public-key', join(keyRoot, 'signer', 'signing.pub')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(ok.stdout.trimEnd().split('\n'), [`ok sample-classifier ${childId}`, `ok sample-classifier ${parentId} (general/, its parent)`]);

  // The parent's files are checked: a flipped byte in general/model.onnx fails DIR's verification.
  const path = join(dir, 'general', 'model.onnx');
  const original = await readFile(path);
  const bytes = Buffer.from(original);
  bytes[bytes.length >> 1]! ^= 0x01;
  await writeFile(path, bytes);
  await assertFails(dir, [`general/model.onnx: sha256 mismatch (expected ${sha256Hex(original).slice(0, 12)}…, got ${sha256Hex(bytes).slice(0, 12)}…)`]);
  await writeFile(path, original);

  // Its signature, by the same key: a parent signed by another key fails.
  const otherKey = await loadPrivateKey(join(keyRoot, 'other', 'signing.key'));
  await rm(join(dir, 'general'), { recursive: true });
  const resignedDir = join(dir, '..', 'resigned');
  const resigned = await writeSampleArtifact(resignedDir, otherKey);
  await rename(resignedDir, join(dir, 'general'));
  await assertFails(dir, [
    /^general\/signature: made with key \S+, not with the given key \S+$/,
    `general/: holds artifact ${artifactId(resigned).slice(0, 12)}…, not this artifact's parent (${parentId.slice(0, 12)}…)`,
  ]);

  // And that it is the parent: another artifact signed by the same key is not.
  await rm(join(dir, 'general'), { recursive: true });
  const stranger = await writeSampleArtifact(join(dir, 'general'), privateKey, 'a'.repeat(64));
  await assertFails(dir, [`general/: holds artifact ${artifactId(stranger).slice(0, 12)}…, not this artifact's parent (${parentId.slice(0, 12)}…)`]);

  // A general/ without its manifest.json: none of its files could be checked, and verify said ok.
  await rm(join(dir, 'general', 'manifest.json'));
  await assertFails(dir, ['general/manifest.json: missing, so the parent in general/ cannot be checked (remove general/ to verify the artifact alone)']);

  // A general/manifest.json that is not a file is named from general/, not by its path after it (general//tmp/…).
  await mkdir(join(dir, 'general', 'manifest.json'));
  await assertFails(dir, ['general/manifest.json: not a regular file']);

  // A general/ that is a symlink out of the artifact is not part of it, however intact.
  await rm(join(dir, 'general'), { recursive: true });
  const outside = join(await tempDir(t), 'parent');
  await writeSampleArtifact(outside, privateKey);
  await symlink(outside, join(dir, 'general'));
  await assertFails(dir, [`general/: a symlink to ${await realpath(outside)}, outside the artifact directory (copy the parent in)`]);

  // An artifact without general/ is verified alone, as before: one line.
  await rm(join(dir, 'general'), { recursive: true });
  const alone = await runCli(['verify', dir, '--public-key', join(keyRoot, 'signer', 'signing.pub')]);
  assert.equal(alone.code, 0, alone.stderr);
  assert.equal(alone.stdout, `ok sample-classifier ${childId}\n`);
});

test('a flipped byte in model.onnx is a sha256 mismatch', async (t) => {
  const dir = await signedArtifact(t);
  const path = join(dir, 'model.onnx');
  const original = await readFile(path);
  const bytes = Buffer.from(original);
  bytes[bytes.length >> 1]! ^= 0x01;
  await writeFile(path, bytes);
  const expected = `model.onnx: sha256 mismatch (expected ${sha256Hex(original).slice(0, 12)}…, got ${sha256Hex(bytes).slice(0, 12)}…)`;
  await assertFails(dir, [expected]);
});

test('training.json is signed with the artifact: an edited option is a sha256 mismatch, and a missing file is named', async (t) => {
  const dir = join(await tempDir(t), 'model');
  await writeSampleArtifact(dir, privateKey, null, SAMPLE_TRAINING);
  assert.equal((await verifyArtifact(dir, publicKey)).ok, true);
  const path = join(dir, 'training.json');
  const original = await readFile(path);
  const edited = Buffer.from(original.toString('utf8').replace('"epochs": 20', '"epochs": 90'));
  assert.notDeepEqual(edited, original);
  await writeFile(path, edited);
  await assertFails(dir, [`training.json: sha256 mismatch (expected ${sha256Hex(original).slice(0, 12)}…, got ${sha256Hex(edited).slice(0, 12)}…)`]);
  await rm(path);
  await assertFails(dir, [/^training\.json: missing/]);
});

test('an edited manifest field breaks the signature', async (t) => {
  const dir = await signedArtifact(t);
  await editManifest(dir, (manifest) => {
    manifest.metrics.test.accuracy = 0.99;
  });
  await assertFails(dir, [`signature: does not verify with key ${keyId(publicKey)}`]);
});

test('a missing file is reported by name', async (t) => {
  const dir = await signedArtifact(t);
  await rm(join(dir, 'tfjs', 'weights.bin'));
  await assertFails(dir, ['tfjs/weights.bin: missing']);
});

// verify said ok to an artifact the registry refuses: files of another network, listed and signed
// under the manifest's architecture (the registry checked model.onnx, nothing checked the tfjs model).
test("model.onnx or a tfjs model of another network than the manifest's architecture fails verification, even listed and signed", async (t) => {
  const other = join(await tempDir(t), 'other');
  await writeSampleArtifact(other, privateKey, null, undefined, 5);
  for (const files of [['model.onnx'], ['tfjs/model.json', 'tfjs/weights.bin']]) {
    const dir = await signedArtifact(t);
    const { signature: _signature, ...manifest } = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    for (const file of files) {
      const bytes = await readFile(join(other, file));
      await writeFile(join(dir, file), bytes);
      manifest.files[file] = { sha256: sha256Hex(bytes), bytes: bytes.length };
    }
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(signManifest(manifest, privateKey), null, 2));
    await assertFails(dir, [
      files[0] === 'model.onnx'
        ? "model.onnx holds the layers 5-3 on 7 inputs (58 parameters, 108 FLOPs/sample), but the manifest's architecture says 8-3 on 7 inputs (91 parameters, 171 FLOPs/sample): the registry would show another model's size"
        : "tfjs/model.json holds the layers 5-3 on 7 inputs (58 values), but the manifest's architecture says 8-3 on 7 inputs (91 parameters, 171 FLOPs/sample): the tfjs model is another network than the version's",
    ]);
  }
});

// verify and the registry took any lineage a signed manifest carried: `nothex` showed as the data set on the dashboard.
test('a lineage prune never writes (a fingerprint that is no SHA-256, an unknown method, a seed outside 31 bits, a general model with an ε) fails verification, even signed', async (t) => {
  const cases: [Record<string, unknown>, string][] = [
    [{ dataFingerprint: 'nothex' }, 'lineage.dataFingerprint: must be 64 lowercase hex digits (the SHA-256 prune computes of the data), not "nothex"'],
    [{ method: 'magic' }, 'lineage.method: must be general or odf2nna, not "magic"'],
    [{ seed: -5 }, 'lineage.seed: must be from 0 to 2147483647 (the seeds prune takes), not -5'],
    [{ method: 'general' }, 'lineage.epsilon: is 0.1, but a general model is not pruned (method odf2nna is)'],
  ];
  for (const [edit, failure] of cases) {
    const dir = await signedArtifact(t);
    const { signature: _signature, ...manifest } = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    manifest.lineage = { ...manifest.lineage, ...edit };
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(signManifest(manifest, privateKey), null, 2));
    await assertFails(dir, [failure]);
  }
});

test('a truncated file is a size mismatch', async (t) => {
  const dir = await signedArtifact(t);
  const path = join(dir, 'tfjs', 'model.json');
  const bytes = await readFile(path);
  await writeFile(path, bytes.subarray(0, 10));
  await assertFails(dir, [`tfjs/model.json: size mismatch (expected ${bytes.length} bytes, got 10)`]);
});

test('a different public key does not match the signing key', async (t) => {
  const dir = await signedArtifact(t);
  const otherId = keyId(await loadPublicKey(otherPublicKeyPath));
  await assertFails(dir, [`signature: made with key ${keyId(publicKey)}, not with the given key ${otherId}`], otherPublicKeyPath);
});

test('an unsigned artifact fails verification', async (t) => {
  const dir = await signedArtifact(t, false);
  await assertFails(dir, ['signature: missing (the artifact is unsigned)']);
});

test('a manifest listing ../etc/passwd is rejected as an unsafe path', async (t) => {
  const dir = await signedArtifact(t);
  await editManifest(dir, (manifest) => {
    manifest.files['../etc/passwd'] = { sha256: sha256Hex(''), bytes: 0 };
  });
  await assertFails(dir, [/manifest\.json: files: unsafe path "\.\.\/etc\/passwd" \(a relative path of segments of A-Z a-z 0-9 \. _ -, separated by \/, none of them \. or \.\.\)$/]);
});

test('an absolute path in the manifest is rejected', async (t) => {
  const dir = await signedArtifact(t);
  await editManifest(dir, (manifest) => {
    manifest.files['/etc/passwd'] = { sha256: sha256Hex(''), bytes: 0 };
  });
  await assertFails(dir, [/manifest\.json: files: unsafe path "\/etc\/passwd"/]);
});

test('a __proto__ entry in the manifest is refused, not dropped before the signature check', async (t) => {
  const dir = await signedArtifact(t);
  const path = join(dir, 'manifest.json');
  const text = await readFile(path, 'utf8');
  await writeFile(path, text.replace('"files": {', `"files": {"__proto__": {"sha256": "${sha256Hex('')}", "bytes": 0},`));
  await assertFails(dir, [/manifest\.json: files\.__proto__: "__proto__" is not allowed as a key$/]);
});

test('a manifest.json with a duplicate key is refused: JSON.parse keeps the last, other parsers the first', async (t) => {
  const dir = await signedArtifact(t);
  const path = join(dir, 'manifest.json');
  const text = await readFile(path, 'utf8');
  // The signature covers the last "name"; a first-wins reader would see "evil-model".
  await writeFile(path, text.replace(/\n  "name": /, '\n  "name": "evil-model",\n  "name": '));
  assert.notEqual(await readFile(path, 'utf8'), text);
  await assertFails(dir, [/manifest\.json: duplicate key name$/]);
});

test('a manifest.json re-saved in Latin-1 is named as not UTF-8, not as a signature that does not match', async (t) => {
  const dir = await signedArtifact(t);
  await editManifest(dir, (manifest) => {
    manifest.labels[0] = 'café';
  });
  // The same edit in UTF-8 is a broken signature; in Latin-1, é is the byte E9, no UTF-8 at all.
  const latin1 = Buffer.from(await readFile(join(dir, 'manifest.json'), 'utf8'), 'latin1');
  await writeFile(join(dir, 'manifest.json'), latin1);
  await assertFails(dir, [`${dir}/manifest.json: not UTF-8 text (a manifest is JSON in UTF-8; was it re-saved in another encoding?)`]);
});

test('a manifest.json that is not JSON fails verification', async (t) => {
  const dir = await signedArtifact(t);
  await writeFile(join(dir, 'manifest.json'), 'this is not json');
  await assertFails(dir, [new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/manifest\\.json: not valid JSON \\(`)]);
});

test('a manifest.json of binary bytes, or nested 20,000 levels deep, fails verification in one line naming it', async (t) => {
  const dir = await signedArtifact(t);
  const escaped = dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // JSON.parse quotes a short text whole, its line breaks and control bytes too.
  await writeFile(join(dir, 'manifest.json'), Buffer.from([0x01, 0x0a, 0x02, 0x7f, 0x0a, 0x00]));
  await assertFails(dir, [new RegExp(`^${escaped}/manifest\\.json: not valid JSON \\([^\\n\\u0000-\\u001f]*\\)$`)]);
  await writeFile(join(dir, 'manifest.json'), Buffer.from([0x01, 0x0a, 0x02, 0xff, 0x0a, 0x00]));
  await assertFails(dir, [`${dir}/manifest.json: not UTF-8 text (a manifest is JSON in UTF-8; was it re-saved in another encoding?)`]);
  await writeFile(join(dir, 'manifest.json'), `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`);
  await assertFails(dir, [`${dir}/manifest.json: nested deeper than 64 levels`]);
});

test('a FIFO in place of model.onnx fails verification at once, named, instead of blocking the read forever', async (t) => {
  const dir = await signedArtifact(t);
  await rm(join(dir, 'model.onnx'));
  execFileSync('mkfifo', [join(dir, 'model.onnx')]);
  const cli = await runCli(['verify', dir, '--public-key', join(keyRoot, 'signer', 'signing.pub')], {}, { timeoutMs: 20_000 });
  assert.equal(cli.code, 1, cli.stderr);
  await assertFails(dir, ['model.onnx: not a regular file']);
});

test('a FIFO or an oversized file in place of manifest.json fails verification at once, named', async (t) => {
  const escaped = (dir: string) => dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const fifo = await signedArtifact(t);
  await rm(join(fifo, 'manifest.json'));
  execFileSync('mkfifo', [join(fifo, 'manifest.json')]);
  await assertFails(fifo, [new RegExp(`^${escaped(fifo)}/manifest\\.json: not a regular file$`)]);
  const huge = await signedArtifact(t);
  await truncate(join(huge, 'manifest.json'), 2 ** 30);
  await assertFails(huge, [new RegExp(`^${escaped(huge)}/manifest\\.json: 1073741824 bytes, more than a manifest can be \\(1048576\\)$`)]);
});

test('a file of the wrong size is a size mismatch without being read: even one too large to read', async (t) => {
  const dir = await signedArtifact(t);
  const path = join(dir, 'tfjs', 'weights.bin');
  const expected = (await readFile(path)).length;
  // Sparse: no disk used. Read whole, it was "unreadable (File size … is greater than 2 GiB)".
  const size = 3 * 2 ** 30;
  await truncate(path, size);
  await assertFails(dir, [`tfjs/weights.bin: size mismatch (expected ${expected} bytes, got ${size})`]);
});

test('a listed file that is a symlink out of the artifact fails verification, named; a symlink inside it passes', async (t) => {
  const dir = await signedArtifact(t);
  const outsideDir = await tempDir(t);
  // The same bytes, so only where they live is wrong: a copy of the directory would carry a link.
  await rename(join(dir, 'model.onnx'), join(outsideDir, 'model.onnx'));
  await symlink(join(outsideDir, 'model.onnx'), join(dir, 'model.onnx'));
  const real = await realpath(join(outsideDir, 'model.onnx'));
  await assertFails(dir, [`model.onnx: a symlink to ${real}, outside the artifact directory (copy the file in)`]);

  // A directory on the way that leads out counts the same.
  const tfjsOutside = join(outsideDir, 'tfjs');
  await rename(join(dir, 'tfjs'), tfjsOutside);
  await symlink(tfjsOutside, join(dir, 'tfjs'));
  const result = await verifyArtifact(dir, publicKey);
  assert.equal(result.ok, false);
  assert.ok(result.failures.some((failure) => failure.startsWith('tfjs/weights.bin: a symlink to ')), JSON.stringify(result.failures));

  // A link that stays inside the artifact is fine, and so is an artifact reached through a symlink.
  const inside = await signedArtifact(t);
  await rename(join(inside, 'model.onnx'), join(inside, 'model.bytes'));
  await symlink('model.bytes', join(inside, 'model.onnx'));
  const linkedDir = join(await tempDir(t), 'linked');
  await symlink(inside, linkedDir);
  assert.deepEqual((await verifyArtifact(linkedDir, publicKey)).failures, []);
});

test('what verify quotes from the artifact (keys, values, symlink targets) is escaped: a newline in it forged an "ok" line, an escape sequence hid the next', async (t) => {
  const dir = await signedArtifact(t);
  const id = artifactId(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')));
  const forged = `x\nok sample-classifier ${id}\n\u001b[8m`;
  const escapedForged = `x\\nok sample-classifier ${id}\\n\\x1b[8m`;
  const cases: [(manifest: Record<string, any>) => void, string][] = [
    // A key the schema does not know: zod's message quoted it raw.
    [(manifest) => void (manifest.lineage[forged] = 1), `lineage: Unrecognized key: "${escapedForged}"`],
    // A key holding a NUL: the path to it was quoted raw.
    [(manifest) => void (manifest.lineage[`${forged}\u0000`] = 1), `lineage.${escapedForged}\\x00: key contains a NUL character (U+0000)`],
    // A value: JSON.stringify escapes a newline but not a right-to-left override.
    [(manifest) => void (manifest.architecture.activations[0] = 'relu\u202e'), 'architecture.activations: "relu\\u202e" is not one of relu, softmax, linear'],
  ];
  const original = await readFile(join(dir, 'manifest.json'), 'utf8');
  for (const [edit, problem] of cases) {
    await writeFile(join(dir, 'manifest.json'), original);
    await editManifest(dir, edit);
    await assertFails(dir, [`${dir}/manifest.json: ${problem}`]);
  }
  // A duplicate key is found in the text, before any schema.
  await writeFile(join(dir, 'manifest.json'), original.replace('"lineage": {', `"lineage": {${JSON.stringify(forged)}: 1, ${JSON.stringify(forged)}: 2,`));
  await assertFails(dir, [`${dir}/manifest.json: duplicate key lineage.${escapedForged}`]);

  // A listed file, and general/, symlinked to a path whose name holds the same lines.
  await writeFile(join(dir, 'manifest.json'), original);
  const outside = join(await tempDir(t), forged);
  await mkdir(outside);
  await rename(join(dir, 'model.onnx'), join(outside, 'model.onnx'));
  await symlink(join(outside, 'model.onnx'), join(dir, 'model.onnx'));
  const realOutside = (await realpath(outside)).replace(forged, escapedForged);
  await assertFails(dir, [`model.onnx: a symlink to ${realOutside}/model.onnx, outside the artifact directory (copy the file in)`]);
  await rm(join(dir, 'model.onnx'));
  await rename(join(outside, 'model.onnx'), join(dir, 'model.onnx'));
  await writeSampleArtifact(join(outside, 'general'), privateKey);
  await symlink(join(outside, 'general'), join(dir, 'general'));
  await assertFails(dir, [`general/: a symlink to ${realOutside}/general, outside the artifact directory (copy the parent in)`]);
});

test('a manifest.json, or general/manifest.json, that is a symlink out of the artifact fails verification, as a listed file does; a symlink inside it passes', async (t) => {
  const outsideDir = await tempDir(t);
  // The same bytes, so only where they live is wrong: verify said ok, exit 0.
  const dir = await signedArtifact(t);
  await rename(join(dir, 'manifest.json'), join(outsideDir, 'elsewhere.json'));
  await symlink(join(outsideDir, 'elsewhere.json'), join(dir, 'manifest.json'));
  const real = await realpath(join(outsideDir, 'elsewhere.json'));
  await assertFails(dir, [`${dir}/manifest.json: a symlink to ${real}, outside the artifact directory (copy the file in)`]);

  const { dir: pruned } = await prunedWithParent(t);
  await rename(join(pruned, 'general', 'manifest.json'), join(outsideDir, 'parent.json'));
  await symlink(join(outsideDir, 'parent.json'), join(pruned, 'general', 'manifest.json'));
  const parentReal = await realpath(join(outsideDir, 'parent.json'));
  await assertFails(pruned, [`general/manifest.json: a symlink to ${parentReal}, outside the artifact directory (copy the file in)`]);

  // A manifest.json linked to a file inside the artifact is part of it.
  const inside = await signedArtifact(t);
  await rename(join(inside, 'manifest.json'), join(inside, 'manifest.bytes'));
  await symlink('manifest.bytes', join(inside, 'manifest.json'));
  assert.deepEqual((await verifyArtifact(inside, publicKey)).failures, []);
});
