import type { Manifest } from '../shared/artifact/manifest.ts';
import type { Dataset } from '../shared/data/dataset.ts';

/** The device's labelled holdout, in one model's feature order and label indices. */
export interface AlignedHoldout {
  features: Float32Array;
  rows: number;
  nFeatures: number;
  y: number[];
  task: Manifest['task'];
  fingerprint: string;
}

/**
 * Aligns a holdout CSV with a model: columns are picked by the manifest's feature names (extra
 * columns are ignored), class labels are mapped to the manifest's label order. Throws an Error
 * with a one-line reason when they do not fit.
 */
export function alignHoldout(dataset: Dataset, manifest: Manifest): AlignedHoldout {
  if (dataset.task !== manifest.task) throw new Error(`holdout is a ${dataset.task} data set but the model does ${manifest.task}`);
  const columns = manifest.features.map((name) => {
    const index = dataset.featureNames.indexOf(name);
    if (index < 0) throw new Error(`holdout has no column "${name}" that the model needs`);
    return index;
  });
  const nFeatures = columns.length;
  const features = new Float32Array(dataset.x.length * nFeatures);
  dataset.x.forEach((row, r) => columns.forEach((column, c) => (features[r * nFeatures + c] = row[column]!)));
  let y = dataset.y;
  if (manifest.task === 'classification') {
    const labelIndex = new Map(manifest.labels.map((label, i) => [label, i]));
    y = dataset.y.map((classIndex) => {
      const name = dataset.classes[classIndex]!;
      const index = labelIndex.get(name);
      if (index === undefined) throw new Error(`holdout label "${name}" is not one of the model's classes (${manifest.labels.join(', ')})`);
      return index;
    });
  }
  return { features, rows: dataset.x.length, nFeatures, y, task: manifest.task, fingerprint: dataset.fingerprint };
}
