import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { packRows, runModel } from '../../agent/onnx-runner.ts';
import { AGENT_SESSION_OPTIONS, createOnnxSession, type OnnxRunPath } from '../../agent/onnx-session.ts';
import { OrtSessionCache } from '../../agent/session-cache.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import { exportOnnx } from '../../shared/artifact/onnx-export.ts';
import { randomNetwork, rawRows } from '../artifact/fixtures.ts';

const network = randomNetwork(5, 7, [{ units: 8, activation: 'relu' }, { units: 3, activation: 'softmax' }]);

for (const path of ['public', 'inline'] as OnnxRunPath[]) {
  test(`a request's run already started when an A/B switch releases its model still answers from that model (${path} path); later runs are refused`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'fleetprune-session-cache-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const bytes = exportOnnx(network);
    const onnxPath = join(dir, 'model.onnx');
    await writeFile(onnxPath, bytes);
    const sessions = new OrtSessionCache(AGENT_SESSION_OPTIONS, path);
    const lease = await sessions.acquire({ artifactId: 'a'.repeat(64), onnxPath, onnxSha256: sha256Hex(bytes) });
    const features = packRows(rawRows(3, network, 4), 7);

    // The predict handler takes the active model and starts its run; the switch then releases it.
    const answer = runModel(lease.session, features, 4, 7);
    const released = lease.release();
    const reference = await createOnnxSession(bytes, AGENT_SESSION_OPTIONS, 'public');
    t.after(() => reference.release());
    assert.deepEqual(await answer, await runModel(reference, features, 4, 7));
    await released;
    assert.equal(sessions.size, 0);
    await assert.rejects(runModel(lease.session, features, 4, 7), /released|disposed/);
  });
}
