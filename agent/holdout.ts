import type { Manifest } from '../shared/artifact/manifest.ts';
import { parseDataset, readDataFile, type Dataset, type Task } from '../shared/data/dataset.ts';
import { parseDecimal } from '../shared/util/numbers.ts';

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
 * The device's labelled holdout CSV. Its label column is read the way each model needs it
 * (class names for a classifier, numbers for a regressor), never guessed: from the labels alone
 * a small holdout of a few integers could be either, a target with few distinct values or classes.
 */
export class Holdout {
  readonly #byTask = new Map<Task, Dataset>();

  private constructor(
    readonly source: string,
    private readonly reread: ((task: Task) => Dataset) | null,
  ) {}

  /** Reads and checks the CSV (columns, numbers): every problem is a one-line UserError. */
  static fromFile(path: string, label: string): Holdout {
    return Holdout.fromText(readDataFile(path), label, path);
  }

  static fromText(text: string, label: string, source = 'holdout'): Holdout {
    const holdout = new Holdout(source, (task) => parseDataset(text, { label, task }, source));
    // Parsed once up front, so a broken file (columns, numbers) stops the agent at start.
    const checked = parseDataset(text, { label }, source);
    holdout.#byTask.set(checked.task, checked);
    return holdout;
  }

  /** A data set already read (the demo's split of a shipped set): its labels serve its own task only. */
  static fromDataset(dataset: Dataset, source = 'holdout'): Holdout {
    const holdout = new Holdout(source, null);
    holdout.#byTask.set(dataset.task, dataset);
    return holdout;
  }

  /** The holdout with its labels read for `task`; an Error if they cannot be (text as a regression target). */
  forTask(task: Task): Dataset {
    let dataset = this.#byTask.get(task);
    if (!dataset) {
      if (!this.reread) throw new Error(`${this.source}: its labels are ${[...this.#byTask.keys()].join(', ')} targets, and the model does ${task}`);
      dataset = this.reread(task);
      this.#byTask.set(task, dataset);
    }
    return dataset;
  }
}

/**
 * Aligns the holdout with a model: columns are picked by the manifest's feature names (extra
 * columns are ignored), labels are read for the model's task and class labels mapped to the
 * manifest's label order. Throws an Error with a one-line reason when they do not fit.
 */
export function alignHoldout(holdout: Holdout, manifest: Manifest): AlignedHoldout {
  const dataset = holdout.forTask(manifest.task);
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
    // Numeric classes are read by value and named canonically ("1"); a model trained before that
    // names its classes as its data wrote them ("1.0"): matched by value.
    const byValue = new Map(manifest.labels.filter((label) => Number.isFinite(parseDecimal(label))).map((label) => [parseDecimal(label), labelIndex.get(label)!]));
    y = dataset.y.map((classIndex) => {
      const name = dataset.classes[classIndex]!;
      const index = labelIndex.get(name) ?? byValue.get(parseDecimal(name));
      if (index === undefined) throw new Error(`holdout label "${name}" is not one of the model's classes (${manifest.labels.join(', ')})`);
      return index;
    });
  }
  return { features, rows: dataset.x.length, nFeatures, y, task: manifest.task, fingerprint: dataset.fingerprint };
}
