import type { KeyObject } from 'node:crypto';
import type { Activation, DenseNetwork } from '../../shared/model/dense-network.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { toTfjsModel } from '../../shared/model/tfjs-convert.ts';
import { createRng } from '../../shared/util/rng.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { writeArtifact } from '../../shared/artifact/write-artifact.ts';
import type { TrainingRecord } from '../../shared/artifact/training-record.ts';

/** A training.json as prune writes one (server/pruning/options.ts optionsInEffect, abridged). */
export const SAMPLE_TRAINING: TrainingRecord = { tool: { name: 'fleetprune', version: '0.1.0' }, backend: 'wasm', options: { layers: 1, units: 8, epochs: 20, batchSize: 16, epsilons: [0.1], fullSweep: false } };

/**
 * A seeded random network with far-from-standard input statistics (means up to ±200, scales
 * 0.5..30), so a missing or wrong standardization step changes its output.
 */
export function randomNetwork(
  seed: number,
  inputs: number,
  layers: { units: number; activation: Activation }[],
  target?: { mean: number; scale: number },
): DenseNetwork {
  const rng = createRng(seed);
  const uniform = (low: number, high: number) => low + (high - low) * rng();
  let width = inputs;
  return {
    inputMean: Float32Array.from({ length: inputs }, () => uniform(-200, 200)),
    inputScale: Float32Array.from({ length: inputs }, () => uniform(0.5, 30)),
    layers: layers.map(({ units, activation }) => {
      const limit = Math.sqrt(6 / (width + units));
      const layer = {
        inputs: width,
        units,
        weights: Float32Array.from({ length: width * units }, () => uniform(-limit, limit)),
        bias: Float32Array.from({ length: units }, () => uniform(-0.5, 0.5)),
        activation,
      };
      width = units;
      return layer;
    }),
    target,
  };
}

/** Raw (unstandardized) feature rows around the network's input statistics. */
export function rawRows(seed: number, network: DenseNetwork, count: number): number[][] {
  const rng = createRng(seed);
  return Array.from({ length: count }, () =>
    Array.from(network.inputMean, (mean, i) => mean + network.inputScale[i]! * (rng() * 4 - 2)),
  );
}

export const CLASSIFIER_FEATURES = ['f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6'];

/**
 * A 7 → 8 relu → 3 softmax classifier (`hiddenUnits` relu units) written as an artifact into `dir` (signed when a key is
 * given), naming `parentSha256` as its parent when given, with a training.json when `training` is given.
 */
export async function writeSampleArtifact(dir: string, privateKey?: KeyObject, parentSha256: string | null = null, training?: TrainingRecord, hiddenUnits = 8): Promise<Manifest> {
  await initTfjs();
  const network = randomNetwork(7, CLASSIFIER_FEATURES.length, [
    { units: hiddenUnits, activation: 'relu' },
    { units: 3, activation: 'softmax' },
  ]);
  const tfjsModel = toTfjsModel(network);
  try {
    return await writeArtifact(dir, {
      network,
      tfjsModel,
      privateKey,
      training,
      manifest: {
        formatVersion: 1,
        name: 'sample-classifier',
        createdAt: '2025-01-02T03:04:05.000Z',
        task: 'classification',
        features: CLASSIFIER_FEATURES,
        labels: ['a', 'b', 'c'],
        labelName: 'kind',
        lineage: { parentSha256, epsilon: 0.1, epsilonMode: 'relative', dataFingerprint: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', method: 'odf2nna', seed: 7 },
        metrics: { test: { accuracy: 0.9 }, validation: { accuracy: 0.85 } },
      },
    });
  } finally {
    tfjsModel.dispose();
  }
}
