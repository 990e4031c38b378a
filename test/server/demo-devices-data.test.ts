import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadDemoData } from '../../server/demo/demo-fleet.ts';
import { formatDevices } from '../../server/demo/demo-summary.ts';
import { planFleet } from '../../server/demo/simulated-fleet.ts';
import type { DeviceReport } from '../../server/metricproviders/report-history.ts';
import { loadDatasetFile, type Dataset } from '../../shared/data/dataset.ts';
import { shippedDatasetPath } from '../../shared/datasets/index.ts';
import { tempDir } from '../helpers/cli.ts';

/** `data` as a CSV file an agent could be given as its --holdout. */
function csvOf(data: Dataset): string {
  const label = (y: number) => (data.task === 'classification' ? data.classes[y]! : String(y));
  return [[...data.featureNames, data.labelName].join(','), ...data.x.map((row, i) => `${row.join(',')},${label(data.y[i]!)}`)].join('\n') + '\n';
}

/**
 * Every simulated device reported the whole shipped file's fingerprint (its holdout copied it
 * from the data set it was cut from), as did the training half, in the models' lineage: the
 * devices' data looked identical to each other and to the training data.
 */
for (const name of ['wine', 'diabetes'] as const) {
  test(`demo (${name}): the training half and each device's holdout carry the fingerprint of their own rows, the one a file of them gives an agent`, async (t) => {
    const whole = loadDatasetFile(shippedDatasetPath(name), { label: name === 'wine' ? 'cultivar' : 'progression' });
    const { train, holdout } = loadDemoData(name, 1);
    const devices = planFleet(8, holdout, 1);
    const fingerprints = [whole, train, holdout, ...devices.map((device) => device.holdout)].map((data) => data.fingerprint);
    assert.equal(new Set(fingerprints).size, fingerprints.length, 'no two of the whole file, the halves and the devices share a fingerprint');

    const dir = await tempDir(t);
    for (const [file, data] of [['train.csv', train], ['device.csv', devices[1]!.holdout]] as const) {
      await writeFile(join(dir, file), csvOf(data));
      const read = loadDatasetFile(join(dir, file), { label: data.labelName, minClasses: 1 });
      assert.equal(read.x.length, data.x.length);
      assert.equal(read.fingerprint, data.fingerprint, `${file}: the fingerprint an agent reads from a file of these rows`);
    }
  });
}

const report = (deviceId: string, accuracy: number, p95: number, at: number): DeviceReport => ({
  model: 'wine',
  version: '2',
  role: 'candidate',
  cohort: 'pilot',
  deviceId,
  accuracy,
  latencyMs: { p50: p95 / 2, p95, p99: p95 },
  errors: 0,
  predictions: 10,
  ts: new Date(at),
});

test('the demo summary averages over devices, each once (its newest report), not over reports', () => {
  // osaka-01 benchmarked version 2 twice: as the candidate, then as the active model beside the next one.
  const line = formatDevices([report('osaka-01', 1, 0.2, 1), report('osaka-01', 1, 0.2, 2), report('lyon-02', 0.5, 0.4, 1)]);
  assert.match(line, /^\s+75\.0%\s+0\.\d{3}\s+\(2 devices\)$/, line);
  assert.equal(formatDevices([]), '  (no device reports)');
});
