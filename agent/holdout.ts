import { statSync } from 'node:fs';
import type { Manifest } from '../shared/artifact/manifest.ts';
import { classesAreValues, parseDataset, readDataFile, type Dataset } from '../shared/data/dataset.ts';
import { canonicalText, columnKey } from '../shared/util/canonical-text.ts';
import { UserError } from '../shared/util/errors.ts';
import { parseDecimal } from '../shared/util/numbers.ts';

/** The largest holdout CSV the agent reads. */
export const MAX_HOLDOUT_BYTES = 32 * 2 ** 20;

/**
 * A holdout larger than this is warned about at start: reading it costs some 30 times its size in
 * memory, for a while, and about a second per MiB on a fast core (measured: 30 MiB of iris rows,
 * 1.4 million, took 13 s to check and 16 s more for the active model, and left the agent at
 * 1.1 GB), which a small device may not have; a few thousand rows serve as well.
 */
export const LARGE_HOLDOUT_BYTES = 4 * 2 ** 20;

/** The start's warning about a holdout over LARGE_HOLDOUT_BYTES, or null. */
export function largeHoldoutWarning(holdout: Holdout): string | null {
  if (holdout.bytes === undefined || holdout.bytes <= LARGE_HOLDOUT_BYTES) return null;
  return (
    `the holdout ${holdout.source} is ${(holdout.bytes / 2 ** 20).toFixed(1)} MiB (${holdout.rows} rows): reading it took ${(holdout.readMs / 1000).toFixed(1)} s, ` +
    'and each model reading columns of it no model read before (the active one at start, a candidate with other features) takes about as long and some 30 times the file in memory; ' +
    'a few thousand rows measure accuracy to about 1 %: a smaller file serves as well'
  );
}

/** The device's labelled holdout, in one model's feature order and label indices. */
export interface AlignedHoldout {
  features: Float32Array;
  rows: number;
  nFeatures: number;
  y: number[];
  task: Manifest['task'];
  fingerprint: string;
}

/** What a model reads of the holdout: its task and its feature columns, by name. */
export type HoldoutReader = Pick<Manifest, 'task' | 'features'> & { labels?: readonly string[] };

/**
 * The device's labelled holdout CSV. Each model reads the columns it needs (others, such as a
 * timestamp or a site name, are ignored) and its label column the way it needs it (class names
 * for a classifier, numbers for a regressor), never guessed: from the labels alone a small
 * holdout of a few integers could be either, a target with few distinct values or classes. A
 * device may see one class only (a site that only ever sees one kind): accuracy on it is still
 * well defined, so a holdout needs no second class.
 */
export class Holdout {
  readonly #read = new Map<string, Dataset>();

  private constructor(
    readonly source: string,
    private readonly reread: ((reader: HoldoutReader) => Dataset) | null,
    private readonly given: Dataset | null = null,
    /** Its data rows. */
    readonly rows = 0,
    /** The file's size (fromFile), and how long reading and checking it took. */
    readonly bytes: number | undefined = undefined,
    readonly readMs = 0,
  ) {}

  /** Reads and checks the CSV (its shape and label column): every problem is a one-line UserError. */
  static fromFile(path: string, label: string): Holdout {
    // The text and each model's reading of it are held in memory (about 15 times the file), and a
    // model's first reading runs in one turn of the event loop: a file far beyond any holdout's
    // needs would stall serving for seconds, or end the agent out of memory on a small device.
    let bytes = 0;
    try {
      bytes = statSync(path).size;
    } catch {
      // readDataFile names the problem.
    }
    if (bytes > MAX_HOLDOUT_BYTES) {
      throw new UserError(`${path}: ${(bytes / 2 ** 20).toFixed(1)} MiB; a holdout may be at most ${MAX_HOLDOUT_BYTES / 2 ** 20} MiB (some hundred thousand rows; a few thousand measure accuracy to about 1 %)`);
    }
    const started = Date.now();
    const read = Holdout.fromText(readDataFile(path), label, path);
    return new Holdout(read.source, read.reread, null, read.rows, bytes, Date.now() - started);
  }

  static fromText(text: string, label: string, source = 'holdout'): Holdout {
    // Checked up front, so a broken file (not CSV, no label column, an empty label) stops the
    // agent at start; its values are checked when a model reads the columns it needs.
    const { x } = parseDataset(text, { label, features: [], minClasses: 1 }, source);
    return new Holdout(source, (reader) => {
      // Else the reader would say the column is missing while listing it among the file's columns.
      if (reader.features.includes(label)) throw new UserError(`${source}: the label column ${JSON.stringify(label)} is one of the model's features (is --label the right column?)`);
      const classNames = reader.task === 'classification' && reader.labels && reader.labels.length > 0 ? reader.labels : undefined;
      return parseDataset(text, { label, task: reader.task, features: reader.features, minClasses: 1, classNames }, source);
    }, null, x.length);
  }

  /** A data set already read (the demo's split of a shipped set): its labels serve its own task only. */
  static fromDataset(dataset: Dataset, source = 'holdout'): Holdout {
    return new Holdout(source, null, dataset, dataset.x.length);
  }

  /** The holdout as `reader` reads it: its features in the model's order, labels read for its task; an Error if they cannot be. */
  forModel(reader: HoldoutReader): Dataset {
    if (this.given) {
      if (this.given.task !== reader.task) throw new Error(`${this.source}: its labels are ${this.given.task} targets, and the model does ${reader.task}`);
      return this.given;
    }
    const key = JSON.stringify([reader.task, reader.features, reader.task === 'classification' ? (reader.labels ?? []) : []]);
    let dataset = this.#read.get(key);
    if (!dataset) {
      dataset = this.reread!(reader);
      this.#read.set(key, dataset);
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
  const dataset = holdout.forModel(manifest);
  const columns = manifest.features.map((name) => {
    // The holdout's names are read canonical (canonicalText) and without spaces around them; a
    // model's are as its data wrote them (" d " before those spaces were trimmed too).
    const index = dataset.featureNames.indexOf(columnKey(name));
    if (index < 0) throw new Error(`${holdout.source}: no column "${name}", which the model needs`);
    return index;
  });
  const nFeatures = columns.length;
  const features = new Float32Array(dataset.x.length * nFeatures);
  dataset.x.forEach((row, r) => columns.forEach((column, c) => (features[r * nFeatures + c] = row[column]!)));
  let y = dataset.y;
  if (manifest.task === 'classification') {
    const labelIndex = new Map(manifest.labels.map((label, i) => [canonicalText(label), i]));
    // A model whose classes are all numbers reads them by value, named canonically ("1"); one
    // trained before that names them as its data wrote them ("1.0"): matched by value. A model
    // with a class that is not a number names every class as written ("01" and "1" are two).
    const numeric = classesAreValues(manifest.labels);
    const byValue = new Map(numeric ? manifest.labels.map((label) => [parseDecimal(label), labelIndex.get(canonicalText(label))!]) : []);
    const mapped = dataset.classes.map((name) => labelIndex.get(name) ?? byValue.get(parseDecimal(name)));
    const unknown = mapped.findIndex((index) => index === undefined);
    if (unknown >= 0) {
      const rows = dataset.y.filter((classIndex) => classIndex === unknown).length;
      const first = dataset.y.indexOf(unknown);
      // The file's line, as in every other message about the file.
      const where = dataset.rowLines ? `line ${dataset.rowLines[first]}` : `data row ${first + 1}`;
      throw new Error(
        `${holdout.source}: label "${dataset.classes[unknown]}" (${rows} row${rows === 1 ? '' : 's'}, the first at ${where}) is not one of the model's classes (${manifest.labels.join(', ')})`,
      );
    }
    y = dataset.y.map((classIndex) => mapped[classIndex]!);
  }
  return { features, rows: dataset.x.length, nFeatures, y, task: manifest.task, fingerprint: dataset.fingerprint };
}

