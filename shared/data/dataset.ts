import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { FLOAT32_MAX, parseDecimal } from '../util/numbers.ts';
import { UserError, errorMessage } from '../util/errors.ts';

export type Task = 'classification' | 'regression';

/** A tabular data set: numeric features and one label column, loaded from a CSV with a header row. */
export interface Dataset {
  featureNames: string[];
  labelName: string;
  task: Task;
  /** Row-major features, one array per row. */
  x: number[][];
  /** Class index (classification) or target value (regression). */
  y: number[];
  /** Class names in index order; empty for regression. */
  classes: string[];
  /** sha256 of the canonical content (header, rows), independent of file formatting. */
  fingerprint: string;
}

export interface LoadOptions {
  label: string;
  task?: Task;
}

/** Reads and validates a CSV file. Every problem is a UserError naming the file, row or column. */
export function loadDatasetFile(path: string, options: LoadOptions): Dataset {
  return parseDataset(readDataFile(path), options, path);
}

/** A data file's text; a UserError naming the file if it cannot be read. */
export function readDataFile(path: string): string {
  try {
    if (!statSync(path).isFile()) throw new Error('not a regular file');
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : errorMessage(error);
    throw new UserError(`cannot read data file ${path}: ${reason}`);
  }
}

/** Parses CSV text (header row first) into a Dataset. `source` names it in error messages. */
export function parseDataset(text: string, options: LoadOptions, source = 'data'): Dataset {
  let records: string[][];
  try {
    // bom: a UTF-8 byte order mark (spreadsheet exports) is not part of the first column's name.
    records = parse(text, { bom: true, skip_empty_lines: true, trim: true, relax_column_count: false }) as string[][];
  } catch (error) {
    throw new UserError(`${source}: not a valid CSV file: ${errorMessage(error)}`);
  }
  const header = records[0];
  if (!header || header.length === 0) throw new UserError(`${source}: the file is empty`);
  const rows = records.slice(1);
  if (rows.length === 0) throw new UserError(`${source}: the file has a header but no data rows`);
  const labelIndex = header.indexOf(options.label);
  if (labelIndex < 0) {
    throw new UserError(`${source}: no label column ${quoted(options.label)} (columns: ${listed(header)})`);
  }
  const featureNames = header.filter((_, i) => i !== labelIndex);
  if (featureNames.length === 0) throw new UserError(`${source}: there are no feature columns besides the label`);
  const seen = new Set<string>();
  for (const name of header) {
    if (seen.has(name)) throw new UserError(`${source}: column ${quoted(name)} appears twice in the header`);
    seen.add(name);
  }

  const x: number[][] = [];
  const rawLabels: string[] = [];
  rows.forEach((record, r) => {
    const row: number[] = [];
    record.forEach((cell, c) => {
      if (c === labelIndex) return;
      const value = parseDecimal(cell);
      if (!Number.isFinite(value)) {
        throw new UserError(`${source}: row ${r + 2}, column ${quoted(header[c]!)}: ${quoted(cell)} is not a finite number`);
      }
      if (Math.abs(value) > FLOAT32_MAX) {
        throw new UserError(`${source}: row ${r + 2}, column ${quoted(header[c]!)}: ${cell} is outside the float32 range models compute in (±3.4e38)`);
      }
      row.push(value);
    });
    x.push(row);
    const label = record[labelIndex] ?? '';
    if (label === '') throw new UserError(`${source}: row ${r + 2}: the label ${quoted(options.label)} is empty`);
    rawLabels.push(label);
  });

  const task = options.task ?? inferTask(rawLabels);
  let y: number[];
  let classes: string[] = [];
  if (task === 'classification') {
    classes = sortedClassNames(rawLabels);
    if (classes.length < 2) {
      throw new UserError(`${source}: the label ${quoted(options.label)} has a single class (${clipped(classes[0]!)}); need at least two`);
    }
    const index = new Map(classes.map((name, i) => [name, i]));
    y = rawLabels.map((label) => index.get(label)!);
  } else {
    y = rawLabels.map((label, r) => {
      const value = parseDecimal(label);
      if (!Number.isFinite(value) || Math.abs(value) > FLOAT32_MAX) {
        throw new UserError(`${source}: row ${r + 2}: regression label ${quoted(label)} is not a finite float32 number`);
      }
      return value;
    });
  }

  return { featureNames, labelName: options.label, task, x, y, classes, fingerprint: fingerprintOf(header, x, rawLabels) };
}

/**
 * A label column of non-numbers is a classification target; so is one of integers with few
 * distinct values (at most 20, and fewer than a tenth of the rows). Anything else is regression.
 */
export function inferTask(labels: readonly string[]): Task {
  const numeric = labels.every((label) => Number.isFinite(parseDecimal(label)));
  if (!numeric) return 'classification';
  const distinct = new Set(labels.map(parseDecimal));
  const integers = [...distinct].every((value) => Number.isInteger(value));
  if (integers && distinct.size <= 20 && distinct.size < Math.max(3, labels.length / 10)) return 'classification';
  return 'regression';
}

function sortedClassNames(labels: readonly string[]): string[] {
  const distinct = [...new Set(labels)];
  const numeric = distinct.every((label) => Number.isFinite(parseDecimal(label)));
  return numeric ? distinct.sort((a, b) => parseDecimal(a) - parseDecimal(b)) : distinct.sort();
}

/** At most this many characters of a cell or name in an error message (binary files make long garbage). */
const SHOWN_CHARACTERS = 40;

function clipped(text: string): string {
  return text.length > SHOWN_CHARACTERS ? `${text.slice(0, SHOWN_CHARACTERS)}…` : text;
}

/** A cell or column name for an error message: quoted, escaped (JSON) and clipped. */
function quoted(text: string): string {
  return JSON.stringify(clipped(text));
}

/** A header for an error message: its first columns, each quoted. */
function listed(header: readonly string[]): string {
  const shown = header.slice(0, 20).map(quoted).join(', ');
  return header.length > 20 ? `${shown}, … ${header.length - 20} more` : shown;
}

function fingerprintOf(header: readonly string[], x: readonly number[][], labels: readonly string[]): string {
  const hash = createHash('sha256');
  hash.update(header.join(',') + '\n');
  x.forEach((row, i) => hash.update(row.join(',') + ',' + labels[i] + '\n'));
  return hash.digest('hex');
}
