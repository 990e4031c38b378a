import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { describe, test, type TestContext } from 'node:test';
import { artifactId, MAX_MANIFEST_BYTES, type Manifest } from '../../shared/artifact/manifest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { isOneLineError } from '../helpers/cli.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { FIXTURE_DATA_FINGERPRINT, makeArtifact, makeSigner, pushArtifact, storeSnapshot, uploadBlobs, type TestSigner } from './helpers/artifacts.ts';
import { runCli } from './helpers/run-cli.ts';
import { STORE_ENGINES, type StoreEngineName } from './helpers/store-engines.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './helpers/test-server.ts';

/**
 * The registry refuses what every device would refuse later (docs/protocol.md, "What the agent
 * does"): a manifest naming another model than the one it is registered as, and a manifest over
 * MAX_MANIFEST_BYTES. Refused by the pre-upload check and the push alike, storing nothing.
 */

async function setup(t: TestContext, engine: StoreEngineName): Promise<{ server: TestServer; signer: TestSigner } | null> {
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { engine, config: { trustedKeys: [signer.publicKeyPath] } });
  return server ? { server, signer } : null;
}

async function refusal(response: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await response.json()) as { error?: { code: string; message: string } };
  // An answer that is no refusal keeps its body in `message`, for the assertion to show.
  return { status: response.status, code: body.error?.code ?? '', message: body.error?.message ?? JSON.stringify(body) };
}

/** POSTs the manifest to the pre-upload check and to the push of `model`: both answers. */
async function checkAndPush(server: TestServer, model: string, manifest: Manifest) {
  const check = await refusal(await server.request('POST', `/api/models/${model}/versions/check`, { json: { manifest } }));
  const push = await refusal(await server.request('POST', `/api/models/${model}/versions`, { json: { manifest } }));
  return { check, push };
}

/** A signed regressor manifest listing `count` features of 64 characters, with the files of `base`. */
/** Each manifest is refused under `iris` as 409 `message` by check and push (REST) and PushVersion (gRPC), and the store is left as it was. */
async function refusedEverywhere(t: TestContext, server: TestServer, cases: readonly (readonly [Manifest, string])[]): Promise<void> {
  const before = await storeSnapshot(server);
  const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
  t.after(() => models.close());
  for (const [manifest, expected] of cases) {
    const { check, push } = await checkAndPush(server, 'iris', manifest);
    assert.deepEqual(check, { status: 409, code: 'conflict', message: expected });
    assert.deepEqual(push, { status: 409, code: 'conflict', message: expected });
    await assert.rejects(models.call('PushVersion', { name: 'iris', manifest_json: JSON.stringify(manifest) }), (error: any) => {
      assert.equal(error.code, status.FAILED_PRECONDITION, error.details);
      assert.equal(error.details, expected);
      return true;
    });
  }
  assert.equal(await storeSnapshot(server), before, 'the store changed');
}

function manyFeatures(base: Manifest, count: number, signer: TestSigner): Manifest {
  const features = Array.from({ length: count }, (_, i) => `sensor_channel_${String(i).padStart(7, '0')}_${'x'.repeat(42)}`);
  return regressor(base, 'big', features, signer);
}

/** A signed regressor manifest named `name` with these features, with the files of `base`. */
function regressor(base: Manifest, name: string, features: string[], signer: TestSigner): Manifest {
  const count = features.length;
  const { signature: _signature, ...unsigned } = base;
  return signManifest(
    {
      ...unsigned,
      name,
      task: 'regression',
      features,
      labels: [],
      architecture: { layers: [1], inputs: count, params: count + 1, flopsPerSample: 2 * count + 1, activations: ['linear'] },
      metrics: { test: { mse: 1 } },
    },
    signer.privateKey,
  );
}

for (const engine of STORE_ENGINES) {
  describe(`registering what devices would refuse, on ${engine}`, () => {
    test('a manifest naming another model: check, push and their gRPC calls refuse it naming both names; nothing is stored', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const artifact = await makeArtifact(t, { seed: 1, privateKey: signer.privateKey }); // manifest name iris
      await uploadBlobs(server, artifact.dir, artifact.manifest);
      const before = await storeSnapshot(server);
      const expected = 'manifest.name is iris, but the push registers it as model zeta: every device refuses a model whose manifest names another (push it as iris)';
      const { check, push } = await checkAndPush(server, 'zeta', artifact.manifest);
      assert.deepEqual(check, { status: 400, code: 'bad_request', message: expected });
      assert.deepEqual(push, { status: 400, code: 'bad_request', message: expected });
      const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
      t.after(() => models.close());
      for (const method of ['CheckPush', 'PushVersion']) {
        await assert.rejects(models.call(method, { name: 'zeta', manifest_json: JSON.stringify(artifact.manifest) }), (error: any) => {
          assert.equal(error.code, status.INVALID_ARGUMENT, `${method}: ${error.details}`);
          assert.equal(error.details, expected);
          return true;
        });
      }
      assert.equal(await storeSnapshot(server), before, 'the store changed');
      // Under its own name it registers.
      assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
    });

    test('a manifest over MAX_MANIFEST_BYTES: check, push and gRPC CheckPush refuse it naming its size and the limit; nothing is stored', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const artifact = await makeArtifact(t, { seed: 2, privateKey: signer.privateKey });
      await uploadBlobs(server, artifact.dir, artifact.manifest);
      const big = manyFeatures(artifact.manifest, 20_000, signer);
      const bytes = Buffer.byteLength(JSON.stringify(big));
      assert.ok(bytes > MAX_MANIFEST_BYTES, `the fixture has only ${bytes} bytes`);
      const before = await storeSnapshot(server);
      const expected = `manifest: ${bytes} bytes, more than the ${MAX_MANIFEST_BYTES} bytes a device reads (use fewer or shorter feature and label names)`;
      const { check, push } = await checkAndPush(server, 'big', big);
      assert.deepEqual(check, { status: 413, code: 'payload_too_large', message: expected });
      assert.deepEqual(push, { status: 413, code: 'payload_too_large', message: expected });
      const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
      t.after(() => models.close());
      await assert.rejects(models.call('CheckPush', { name: 'big', manifest_json: JSON.stringify(big) }), (error: any) => {
        assert.equal(error.code, status.RESOURCE_EXHAUSTED, error.details);
        assert.equal(error.details, expected);
        return true;
      });
      assert.equal(await storeSnapshot(server), before, 'the store changed');
      // Fewer features of the same names fit: the check lets them through (the fixture's model.onnx,
      // a 7-feature classifier, is then refused at registration as every device would refuse it).
      const fits = manyFeatures(artifact.manifest, 5_000, signer);
      assert.ok(Buffer.byteLength(JSON.stringify(fits)) < MAX_MANIFEST_BYTES);
      assert.equal((await server.request('POST', '/api/models/big/versions/check', { json: { manifest: fits } })).status, 200);
    });

    test('a version of another task than the model\'s latest: check, push and gRPC refuse it naming both tasks; nothing is stored', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const artifact = await makeArtifact(t, { seed: 5, privateKey: signer.privateKey }); // a classifier named iris
      assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
      // What `prune --data diabetes.csv --name iris` makes: a regressor that names itself iris.
      const other = regressor(artifact.manifest, 'iris', artifact.manifest.features, signer);
      const before = await storeSnapshot(server);
      const expected = 'model iris does classification (its latest version iris@1), and this is a regression model: it can replace none of its versions on a device (give it another name)';
      const { check, push } = await checkAndPush(server, 'iris', other);
      assert.deepEqual(check, { status: 409, code: 'conflict', message: expected });
      assert.deepEqual(push, { status: 409, code: 'conflict', message: expected });
      const models = grpcClient(server.grpcAddress, 'ModelRegistry', ADMIN_TOKEN);
      t.after(() => models.close());
      for (const method of ['CheckPush', 'PushVersion']) {
        await assert.rejects(models.call(method, { name: 'iris', manifest_json: JSON.stringify(other) }), (error: any) => {
          assert.equal(error.code, status.FAILED_PRECONDITION, `${method}: ${error.details}`);
          assert.equal(error.details, expected);
          return true;
        });
      }
      assert.equal(await storeSnapshot(server), before, 'the store changed');
      // Under another name the check lets it through (registering it would refuse the fixture's
      // model.onnx, a classifier: every device would refuse it as a regressor).
      const renamed = regressor(artifact.manifest, 'iris-mpg', artifact.manifest.features, signer);
      assert.equal((await server.request('POST', '/api/models/iris-mpg/versions/check', { json: { manifest: renamed } })).status, 200);
      const registered = await pushArtifact(server, 'iris-mpg', artifact.dir, renamed);
      assert.equal(registered.status, 400);
      assert.match(((await registered.json()) as { error: { message: string } }).error.message, /^manifest\.files\.model\.onnx: model\.onnx gives "output" 3 values per row, but the manifest's regression task needs 1: every device would refuse it$/);
    });

    test("a version taking other features than the model's latest (another data set's model under its name), or the same in another order: check, push and gRPC refuse it naming the difference; nothing is stored", async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const artifact = await makeArtifact(t, { seed: 5, privateKey: signer.privateKey }); // a classifier named iris
      assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
      const features = artifact.manifest.features;
      const withFeatures = (names: string[]): Manifest => {
        const { signature: _signature, ...unsigned } = artifact.manifest;
        return signManifest({ ...unsigned, features: names }, signer.privateKey);
      };
      const its = "model iris takes other features (its latest version iris@1): ";
      const tail = '; devices read a version\'s features by name and /v1/predict callers send them in its order, so this one can replace none of its versions (give it another name)';
      const renamed = [...features.slice(0, -1), 'mean_radius'];
      const swapped = [features[1]!, features[0]!, ...features.slice(2)];
      const cases: [Manifest, string][] = [
        [withFeatures(renamed), `${features.length} there, ${features.length} here; this one lacks ${JSON.stringify(features.at(-1))} and adds "mean_radius"`],
        [withFeatures(swapped), `the same ${features.length} in another order (feature 1 is ${JSON.stringify(features[0])} there, ${JSON.stringify(features[1])} here)`],
      ];
      await refusedEverywhere(t, server, cases.map(([manifest, difference]) => [manifest, `${its}${difference}${tail}`]));
      // The same features in the same order pass the check (another seed's model: another artifact).
      const next = await makeArtifact(t, { seed: 6, privateKey: signer.privateKey });
      assert.deepEqual(next.manifest.features, features);
      assert.equal((await server.request('POST', '/api/models/iris/versions/check', { json: { manifest: next.manifest } })).status, 200);
      // Names spelled the other way ("é" composed there, e + U+0301 here) are the same features.
      const spelled = (e: string): Manifest => {
        const { signature: _signature, ...unsigned } = artifact.manifest;
        return signManifest({ ...unsigned, name: 'iris-fr', features: features.map((name, i) => (i === 0 ? `${name}_${e}` : name)) }, signer.privateKey);
      };
      assert.equal((await pushArtifact(server, 'iris-fr', artifact.dir, spelled('\u00e9'))).status, 201);
      assert.equal((await server.request('POST', '/api/models/iris-fr/versions/check', { json: { manifest: spelled('e\u0301') } })).status, 200);
    });

    test("a version predicting other classes than the model's latest (renamed, or in another order): check, push and gRPC refuse it naming the difference; nothing is stored", async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const artifact = await makeArtifact(t, { seed: 5, privateKey: signer.privateKey }); // a classifier named iris
      assert.equal((await pushArtifact(server, 'iris', artifact.dir, artifact.manifest)).status, 201);
      const labels = artifact.manifest.labels;
      assert.ok(labels.length >= 3, 'the fixture is a classifier of three or more classes');
      const withLabels = (names: string[]): Manifest => {
        const { signature: _signature, ...unsigned } = artifact.manifest;
        return signManifest({ ...unsigned, labels: names }, signer.privateKey);
      };
      const its = 'model iris predicts other classes (its latest version iris@1): ';
      const tail = "; /v1/predict callers read a version's answers by class name, index and probability order, and devices score its benchmark against their holdout's labels, so this one can replace none of its versions (give it another name)";
      const numbered = labels.map((_, i) => String(i));
      const cases: [Manifest, string][] = [
        [withLabels(numbered), `${labels.length} there, ${labels.length} here; this one lacks ${labels.slice(0, 3).map((name) => JSON.stringify(name)).join(', ')}${labels.length > 3 ? ` and ${labels.length - 3} more` : ''} and adds "0", "1", "2"${labels.length > 3 ? ` and ${labels.length - 3} more` : ''}`],
        [withLabels([labels[1]!, labels[0]!, ...labels.slice(2)]), `the same ${labels.length} in another order (class 1 is ${JSON.stringify(labels[0])} there, ${JSON.stringify(labels[1])} here)`],
      ];
      await refusedEverywhere(t, server, cases.map(([manifest, difference]) => [manifest, `${its}${difference}${tail}`]));
    });

    test("a lineage naming another model's artifact as the parent (other features, classes or task) is refused by check, push and gRPC; a parent of the same interface, or registered nowhere, is taken", async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      // wine@1: another model, with other features (as many, so its layers still add up).
      const wine = await makeArtifact(t, { seed: 7, name: 'wine', privateKey: signer.privateKey });
      const { signature: _signature, ...unsignedWine } = wine.manifest;
      const wineManifest = signManifest({ ...unsignedWine, features: unsignedWine.features.map((name) => `wine_${name}`) }, signer.privateKey);
      assert.equal((await pushArtifact(server, 'wine', wine.dir, wineManifest)).status, 201);
      const wineId = artifactId(wineManifest);

      const child = await makeArtifact(t, { seed: 8, parent: wineId, privateKey: signer.privateKey }); // an iris classifier claiming wine@1 as its parent
      const features = child.manifest.features;
      const few = (names: readonly string[]) => `${names.slice(0, 3).map((name) => JSON.stringify(name)).join(', ')}${names.length > 3 ? ` and ${names.length - 3} more` : ''}`;
      const expected =
        `manifest.lineage.parentSha256 names wine@1 (artifact ${wineId.slice(0, 12)}…), which cannot be this model's parent: ` +
        `features: ${features.length} there, ${features.length} here; this one lacks ${few(features.map((name) => `wine_${name}`))} and adds ${few(features)}; ` +
        "pruning keeps a network's task, features, classes and data, so this lineage is another model's";
      await uploadBlobs(server, child.dir, child.manifest); // refused for its lineage, not for missing files

      // Parents of other classes (the same features), and of another task.
      const relabeled = await makeArtifact(t, { seed: 12, name: 'wine-classes', privateKey: signer.privateKey });
      const { signature: _relabeledSignature, ...unsignedRelabeled } = relabeled.manifest;
      const relabeledManifest = signManifest({ ...unsignedRelabeled, labels: ['x', 'y', 'z'] }, signer.privateKey);
      assert.equal((await pushArtifact(server, 'wine-classes', relabeled.dir, relabeledManifest)).status, 201);
      const ofOtherClasses = await makeArtifact(t, { seed: 13, parent: artifactId(relabeledManifest), privateKey: signer.privateKey });
      await uploadBlobs(server, ofOtherClasses.dir, ofOtherClasses.manifest);
      const regressionArtifact = await makeArtifact(t, { seed: 15, name: 'wine-mse', task: 'regression', privateKey: signer.privateKey });
      const regression = regressionArtifact.manifest;
      const pushedRegression = await pushArtifact(server, 'wine-mse', regressionArtifact.dir, regression);
      assert.equal(pushedRegression.status, 201, await pushedRegression.clone().text());
      const ofOtherTask = await makeArtifact(t, { seed: 14, parent: artifactId(regression), privateKey: signer.privateKey });
      await uploadBlobs(server, ofOtherTask.dir, ofOtherTask.manifest);
      // A parent of the same features and classes trained on other data: pruning retrains on its parent's data.
      const otherData = await makeArtifact(t, { seed: 16, name: 'iris-other-data', privateKey: signer.privateKey });
      assert.equal((await pushArtifact(server, 'iris-other-data', otherData.dir, otherData.manifest)).status, 201);
      const ofOtherData = await makeArtifact(t, { seed: 17, parent: artifactId(otherData.manifest), privateKey: signer.privateKey, dataFingerprint: 'c'.repeat(64) });
      await uploadBlobs(server, ofOtherData.dir, ofOtherData.manifest);
      const refusedParent = (parent: string, id: string, difference: string) =>
        `manifest.lineage.parentSha256 names ${parent} (artifact ${id.slice(0, 12)}…), which cannot be this model's parent: ${difference}; pruning keeps a network's task, features, classes and data, so this lineage is another model's`;
      await refusedEverywhere(t, server, [
        [child.manifest, expected],
        [ofOtherClasses.manifest, refusedParent('wine-classes@1', artifactId(relabeledManifest), 'classes: 3 there, 3 here; this one lacks "x", "y", "z" and adds "a", "b", "c"')],
        [ofOtherTask.manifest, refusedParent('wine-mse@1', artifactId(regression), 'it does regression, this one classification')],
        [ofOtherData.manifest, refusedParent('iris-other-data@1', artifactId(otherData.manifest), `it was trained on data ${FIXTURE_DATA_FINGERPRINT.slice(0, 12)}…, this one on cccccccccccc…`)],
      ]);

      // Its own model's artifact as the parent, or one this server does not hold, is a lineage it takes.
      const general = await makeArtifact(t, { seed: 9, privateKey: signer.privateKey });
      assert.equal((await pushArtifact(server, 'iris', general.dir, general.manifest)).status, 201);
      const pruned = await makeArtifact(t, { seed: 10, parent: artifactId(general.manifest), privateKey: signer.privateKey });
      assert.equal((await pushArtifact(server, 'iris', pruned.dir, pruned.manifest)).status, 201);
      const elsewhere = await makeArtifact(t, { seed: 11, parent: 'ab'.repeat(32), privateKey: signer.privateKey });
      assert.equal((await pushArtifact(server, 'iris', elsewhere.dir, elsewhere.manifest)).status, 201);
    });

    test('an artifact an older server registered under another model too: pushing it again to its own model is refused as registered, by check and push alike', async (t) => {
      const env = await setup(t, engine);
      if (!env) return;
      const { server, signer } = env;
      const artifact = await makeArtifact(t, { seed: 3, privateKey: signer.privateKey }); // manifest name iris
      // What `models push --name alpha` left before manifests had to name their model ("alpha" sorts first).
      const { store } = server.server.ctx;
      const at = new Date().toISOString();
      const { manifest } = artifact;
      await store.transaction(async (tx) => {
        await tx.models.ensureModel('alpha', at, 'legacy');
        await tx.models.insertVersion({
          model: 'alpha',
          version: '1',
          seq: 1,
          artifactId: artifactId(manifest),
          manifest,
          parentArtifactId: null,
          epsilon: null,
          dataFingerprint: manifest.lineage.dataFingerprint,
          metrics: manifest.metrics,
          createdAt: at,
          createdBy: 'legacy',
        });
      });
      assert.equal((await pushArtifact(server, 'iris', artifact.dir, manifest)).status, 201);
      const before = await storeSnapshot(server);
      const expected = `artifact ${artifactId(manifest)} is already registered as iris@1`;
      const { check, push } = await checkAndPush(server, 'iris', manifest);
      assert.deepEqual(check, { status: 409, code: 'already_exists', message: expected });
      assert.deepEqual(push, { status: 409, code: 'already_exists', message: expected });
      assert.equal(await storeSnapshot(server), before, 'the store changed');
    });
  });
}

test('models push --name of another model than the manifest names: one line naming both, exit 2, nothing uploaded', async (t) => {
  const env = (await setup(t, 'sqlite'))!;
  const { server, signer } = env;
  const artifact = await makeArtifact(t, { seed: 4, privateKey: signer.privateKey });
  const before = await storeSnapshot(server);
  const run = await runCli(['models', 'push', artifact.dir, '--name', 'zeta', '--server', server.grpcAddress, '--token', ADMIN_TOKEN]);
  assert.equal(run.code, 2, run.stderr);
  assert.ok(isOneLineError(run.stderr), run.stderr);
  assert.equal(run.stderr, 'fleetprune: manifest.name is iris, but the push registers it as model zeta: every device refuses a model whose manifest names another (push it as iris)\n');
  assert.equal(run.stdout, '');
  assert.equal(await storeSnapshot(server), before, 'the store changed (a file was uploaded?)');
});
