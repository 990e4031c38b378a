import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ManifestSchema, type Manifest } from '../../shared/artifact/manifest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { generateSigningKeys, loadPrivateKey, loadPublicKey } from '../../shared/artifact/signing-keys.ts';
import { checkSignedManifest } from '../../server/artifacts/uploaded-artifact.ts';
import { TrustedKeys } from '../../server/artifacts/trusted-keys.ts';
import { ServiceError } from '../../server/app/service-error.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { writeSampleArtifact } from './fixtures.ts';

let keyRoot: string;
let privateKey: KeyObject;
let trusted: TrustedKeys;
let sample: Manifest;

before(async () => {
  keyRoot = await mkdtemp(join(tmpdir(), 'fleetprune-keys-'));
  const signer = await generateSigningKeys(join(keyRoot, 'signer'));
  privateKey = await loadPrivateKey(signer.privateKeyPath);
  trusted = new TrustedKeys();
  trusted.add(await loadPublicKey(signer.publicKeyPath));
  // A 7 → 8 relu → 3 softmax classifier: 7 features, labels a, b, c.
  sample = await writeSampleArtifact(join(keyRoot, 'sample'), privateKey);
});

after(() => rm(keyRoot, { recursive: true, force: true }));

/** The sample manifest with `edit` applied, signed again: the signature holds, only the content contradicts itself. */
function contradicting(edit: (manifest: Record<string, any>) => void): Manifest {
  const { signature: _signature, ...unsigned } = structuredClone(sample) as Record<string, any>;
  edit(unsigned);
  return signManifest(unsigned as Manifest, privateKey);
}

const REGRESSOR_ARCHITECTURE = { layers: [8, 1], inputs: 7, params: 7 * 8 + 8 + 8 + 1, flopsPerSample: 2 * 7 * 8 + 8 + 2 * 8 + 1, activations: ['relu', 'linear'] };

const CASES: { name: string; edit: (manifest: Record<string, any>) => void; message: RegExp }[] = [
  { name: 'a feature named twice', edit: (m) => (m.features[3] = 'f1'), message: /^features: names "f1" more than once$/ },
  { name: 'a label named twice', edit: (m) => (m.labels = ['a', 'b', 'a']), message: /^labels: names "a" more than once$/ },
  { name: 'more labels than outputs', edit: (m) => m.labels.push('d'), message: /^labels: lists 4 labels, but the output layer has 3 units$/ },
  { name: 'a classifier with one label', edit: (m) => (m.labels = ['a']), message: /^labels: a classifier needs at least two labels \(got 1\)$/ },
  { name: 'more features than inputs', edit: (m) => m.features.push('f7'), message: /^architecture\.inputs: is 7, but the manifest lists 8 features$/ },
  { name: 'a regressor with labels', edit: (m) => Object.assign(m, { task: 'regression', architecture: REGRESSOR_ARCHITECTURE }), message: /^labels: must be empty for a regression model \(got 3\)$/ },
  { name: 'a regressor with three outputs', edit: (m) => Object.assign(m, { task: 'regression', labels: [] }), message: /^architecture\.layers: a regression model has one output unit \(got 3\)$/ },
  { name: 'a parameter count the layers do not add up to', edit: (m) => (m.architecture.params = 10), message: /^architecture\.params: is 10, but layers \[8,3\] on 7 inputs hold 91$/ },
  { name: 'a FLOP count the layers do not add up to', edit: (m) => (m.architecture.flopsPerSample += 1), message: /^architecture\.flopsPerSample: is 172, but layers \[8,3\] on 7 inputs take 171$/ },
  { name: 'fewer activations than layers', edit: (m) => m.architecture.activations.pop(), message: /^architecture\.activations: lists 1 activations for 2 layers$/ },
  { name: 'an activation fleetprune does not export', edit: (m) => (m.architecture.activations[0] = 'tanh'), message: /^architecture\.activations: "tanh" is not one of relu, softmax, linear$/ },
  // The lineage's ε by the rules of fleetprune prune --epsilon: both or neither of ε and its mode; relative in (0, 1), absolute above 0.
  { name: 'a negative relative ε', edit: (m) => (m.lineage.epsilon = -3), message: /^lineage\.epsilon: is -3, outside \(0, 1\), where a relative ε lies$/ },
  { name: 'a relative ε of 0', edit: (m) => (m.lineage.epsilon = 0), message: /^lineage\.epsilon: is 0, outside \(0, 1\), where a relative ε lies$/ },
  { name: 'a relative ε of 1', edit: (m) => (m.lineage.epsilon = 1), message: /^lineage\.epsilon: is 1, outside \(0, 1\), where a relative ε lies$/ },
  { name: 'a relative ε of 1e300', edit: (m) => (m.lineage.epsilon = 1e300), message: /^lineage\.epsilon: is 1e\+300, outside \(0, 1\), where a relative ε lies$/ },
  { name: 'an absolute ε of 0', edit: (m) => Object.assign(m.lineage, { epsilon: 0, epsilonMode: 'absolute' }), message: /^lineage\.epsilon: is 0, but an absolute ε is a finite number above 0$/ },
  { name: 'a negative absolute ε', edit: (m) => Object.assign(m.lineage, { epsilon: -0.5, epsilonMode: 'absolute' }), message: /^lineage\.epsilon: is -0\.5, but an absolute ε is a finite number above 0$/ },
  { name: 'an ε without its mode', edit: (m) => (m.lineage.epsilonMode = null), message: /^lineage\.epsilonMode: is null, but lineage\.epsilon is 0\.1: give both \(a pruned model\) or neither$/ },
  { name: 'an ε mode without an ε', edit: (m) => (m.lineage.epsilon = null), message: /^lineage\.epsilon: is null, but lineage\.epsilonMode is relative: give both \(a pruned model\) or neither$/ },
];

test('the sample manifest and a consistent regressor parse (the checks refuse only contradictions)', () => {
  assert.equal(ManifestSchema.safeParse(sample).success, true);
  const regressor = contradicting((m) => Object.assign(m, { task: 'regression', labels: [], architecture: REGRESSOR_ARCHITECTURE }));
  assert.equal(ManifestSchema.safeParse(regressor).success, true, JSON.stringify(ManifestSchema.safeParse(regressor).error?.issues));
  // A model not pruned (no ε, no mode), and ε at the edges of what prune takes in either mode.
  const lineages = [
    { parentSha256: null, epsilon: null, epsilonMode: null },
    { epsilon: 1e-9, epsilonMode: 'relative' },
    { epsilon: 0.999, epsilonMode: 'relative' },
    { epsilon: 1e-9, epsilonMode: 'absolute' },
    { epsilon: 1e9, epsilonMode: 'absolute' },
  ];
  for (const lineage of lineages) {
    const parsed = ManifestSchema.safeParse(contradicting((m) => Object.assign(m.lineage, lineage)));
    assert.equal(parsed.success, true, `${JSON.stringify(lineage)}: ${JSON.stringify(parsed.error?.issues)}`);
  }
});

for (const { name, edit, message } of CASES) {
  test(`a signed manifest with ${name} is refused by the registry, naming the field`, () => {
    const manifest = contradicting(edit);
    const parsed = ManifestSchema.safeParse(manifest);
    assert.equal(parsed.success, false);
    const messages = parsed.error!.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    assert.ok(messages.some((line) => message.test(line)), `issues: ${JSON.stringify(messages)}`);
    assert.throws(
      () => checkSignedManifest(manifest, trusted),
      (error: unknown) => error instanceof ServiceError && error.code === 'bad_request' && /^manifest\./.test(error.message) && !error.message.includes('\n'),
    );
  });
}

test('the registry refuses a manifest changed after signing, and one whose signature value is cut short, saying it may be either', () => {
  const changed = { ...sample, labelName: 'species' };
  const cut = { ...sample, signature: { ...sample.signature!, value: sample.signature!.value.slice(0, 20) } };
  for (const manifest of [changed, cut]) {
    assert.throws(
      () => checkSignedManifest(manifest, trusted),
      (error: unknown) =>
        error instanceof ServiceError &&
        error.code === 'bad_request' &&
        /^manifest\.signature: does not verify with key [0-9a-f]{16} \(the manifest was changed after signing, or the signature value is damaged\)$/.test(error.message),
    );
  }
  assert.deepEqual(checkSignedManifest(sample, trusted), sample);
});

test('fleetprune verify refuses a signed manifest that contradicts itself, in one line naming the field', async (t) => {
  const dir = join(await tempDir(t), 'model');
  await writeSampleArtifact(dir, privateKey);
  const manifest = contradicting((m) => m.labels.push('d'));
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  const before = await readFile(join(dir, 'manifest.json'), 'utf8');
  const cli = await runCli(['verify', dir, '--public-key', join(keyRoot, 'signer', 'signing.pub')]);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /labels: lists 4 labels, but the output layer has 3 units/);
  assert.equal(cli.stderr.trimEnd().split('\n').length <= 2, true, cli.stderr);
  assert.doesNotMatch(cli.stderr, /\n\s+at /);
  assert.equal(await readFile(join(dir, 'manifest.json'), 'utf8'), before);
});

test('a manifest of another format version is refused in words, not zod\'s "Invalid input: expected 1"', () => {
  const parsed = ManifestSchema.safeParse({ ...sample, formatVersion: 2 });
  assert.equal(parsed.success, false);
  assert.deepEqual(
    parsed.error!.issues.filter((issue) => issue.path[0] === 'formatVersion').map((issue) => issue.message),
    ['must be 1: the only manifest format this fleetprune reads (an artifact from a newer fleetprune? upgrade this one)'],
  );
});
