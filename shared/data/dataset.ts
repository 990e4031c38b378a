import { createHash } from 'node:crypto';
import { constants } from 'node:buffer';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { parse } from 'csv-parse/sync';
import { MAX_MANIFEST_BYTES } from '../artifact/manifest.ts';
import { canonicalText, columnKey } from '../util/canonical-text.ts';
import { FLOAT32_MAX, parseDecimal } from '../util/numbers.ts';
import { UserError, errorMessage, oneLineMessage } from '../util/errors.ts';
import { decodeDataText, looksLikeUtf16 } from './data-text.ts';

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
  /** What the user should know about the data that does not stop a run (printed, kept in report.json). */
  warnings?: string[];
  /** The line of the file each row starts on, as "row N" in messages counts (data read from a file only). */
  rowLines?: number[];
}

export interface LoadOptions {
  label: string;
  task?: Task;
  /**
   * Only these columns are read, as the features in this order (each must be there); other
   * columns are neither read nor checked. Absent: every column besides the label is a feature.
   */
  features?: readonly string[];
  /**
   * Classes a classification label must have, or distinct values a regression label (default 2,
   * what training needs; a device's holdout may hold one).
   */
  minClasses?: 1 | 2;
  /**
   * The classes of the model the data is read for (with `features`): labels are named as that
   * model names its classes, by value when they are all numbers and as written otherwise, not as
   * the labels in this file alone would be (a device's holdout may hold only some of the classes).
   */
  classNames?: readonly string[];
}

/** Reads and validates a CSV file. Every problem is a UserError naming the file, row or column. */
export function loadDatasetFile(path: string, options: LoadOptions): Dataset {
  return parseDataset(readDataFile(path), options, path);
}

/**
 * What parsing takes in the heap at its peak (the text, csv-parse's records, the rows as numbers),
 * measured: a 50 MB file of 0.77 million rows of 9 cells parsed in a 500 MB heap and not in 400 MB;
 * a 20 MB file of 2.6 million rows of 3 cells in 1.2 GB and not in 900 MB. Per row and per cell,
 * with the text twice (bytes and string).
 */
const PARSE_HEAP = { perByte: 2, perRow: 320, perCell: 32 };
/** The start of a file read to count its rows and cells per byte. */
const SAMPLE_BYTES = 1 << 20;

/** The heap parsing a file of `bytes` takes, from the rows and cells per byte of its start. */
function parseHeapEstimate(path: string, bytes: number): number {
  const sample = Buffer.alloc(Math.min(bytes, SAMPLE_BYTES));
  const fd = openSync(path, 'r');
  try {
    readSync(fd, sample, 0, sample.length, 0);
  } finally {
    closeSync(fd);
  }
  let rows = 0;
  let separators = 0;
  for (const byte of sample) {
    if (byte === 0x0a) rows++;
    else if (byte === 0x2c) separators++;
  }
  const scale = bytes / Math.max(sample.length, 1);
  return bytes * PARSE_HEAP.perByte + rows * scale * PARSE_HEAP.perRow + (rows + separators) * scale * PARSE_HEAP.perCell;
}

/**
 * Refuses, before reading it, a file larger than this process can parse: one over node's longest
 * string failed with "internal error: Cannot create a string longer than 0x1fffffe8 characters"
 * (exit 1), and one that fits there but not in the heap ended the process with a V8 out-of-memory abort.
 */
function assertParsable(path: string, bytes: number): void {
  const mb = (n: number) => `${Math.round(n / 1e6)} MB`;
  if (bytes > constants.MAX_STRING_LENGTH) {
    throw new UserError(`cannot read data file ${path}: it is ${mb(bytes)}, more than node reads as one text (${mb(constants.MAX_STRING_LENGTH)}); use a sample of its rows`);
  }
  if (bytes < SAMPLE_BYTES) return;
  const { heap_size_limit: limit, used_heap_size: used } = getHeapStatistics();
  const needed = parseHeapEstimate(path, bytes);
  if (needed > limit - used) {
    const flag = Math.ceil((used + needed * 1.25) / 2 ** 20);
    throw new UserError(
      `cannot read data file ${path}: it is ${mb(bytes)}, and parsing it takes about ${mb(needed)} of memory, more than node may use here (${mb(limit)} in all): ` +
        `give it more (NODE_OPTIONS=--max-old-space-size=${flag}) or use a sample of its rows`,
    );
  }
}

/** A data file's text; a UserError naming the file if it cannot be read. */
export function readDataFile(path: string): string {
  let bytes: Buffer;
  try {
    const stats = statSync(path);
    if (!stats.isFile()) throw new Error('not a regular file');
    assertParsable(path, stats.size);
    bytes = readFileSync(path);
  } catch (error) {
    if (error instanceof UserError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : errorMessage(error);
    throw new UserError(`cannot read data file ${path}: ${reason}`);
  }
  return decodeDataText(bytes, path);
}

/** The line on which the quote left open at the end of `text` opened ("" inside a quoted cell is an escaped quote), or null. */
function unclosedQuoteLine(text: string): number | null {
  let line = 1;
  let openedOn: number | null = null;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '\n' || (char === '\r' && text[i + 1] !== '\n')) line++;
    else if (char === '"') {
      if (openedOn === null) openedOn = line;
      else if (text[i + 1] === '"') i++;
      else openedOn = null;
    }
  }
  return openedOn;
}

/** Parses CSV text (header row first) into a Dataset. `source` names it in error messages. */
export function parseDataset(text: string, options: LoadOptions, source = 'data'): Dataset {
  if (looksLikeUtf16(text)) throw new UserError(`${source}: the file is UTF-16 text, not UTF-8; save it as CSV in UTF-8`);
  // Byte order marks, two where a tool added its own to a file that had one: the second became part of the first column's name.
  text = text.replace(/^\uFEFF+/, '');
  assertCommaSeparated(text, source, options.label);
  let parsed: string[][];
  // The line each record ends on, for row numbers: kept beside the records rather than as csv-parse's
  // `info` object on each, which took a third of the memory a large file's parse needs.
  const endLines: number[] = [];
  let headerFields = 0;
  try {
    parsed = parse(text, {
      // bom: a UTF-8 byte order mark (spreadsheet exports) is not part of the first column's name.
      bom: true,
      // Any line ending, mixed too (rows appended on another system): csv-parse otherwise takes the
      // first line's ending for every line, and a CRLF file with LF rows becomes one huge row.
      record_delimiter: ['\r\n', '\n', '\r'],
      skip_empty_lines: true,
      // A line of bare separators (",,,,": the empty rows a spreadsheet exports below its data,
      // where cells were once formatted) is blank too, not a row of empty numbers.
      skip_records_with_empty_values: true,
      trim: true,
      relax_column_count: false,
      on_record: (record: string[], context: { lines: number }) => {
        if (endLines.length === 0) headerFields = record.length;
        endLines.push(context.lines);
        return record;
      },
    }) as unknown as typeof parsed;
  } catch (error) {
    // csv-parse names the line where the file ended, which is the last line, whichever line opened the quote.
    const opened = (error as { code?: unknown }).code === 'CSV_QUOTE_NOT_CLOSED' ? unclosedQuoteLine(text) : null;
    if (opened !== null) throw new UserError(`${source}: not a valid CSV file: line ${opened} opens a quoted cell (") that is never closed`);
    // Its "field 2" counts from 0.
    const stray = error as { code?: unknown; lines?: unknown; index?: unknown };
    if (stray.code === 'INVALID_OPENING_QUOTE' && typeof stray.lines === 'number' && typeof stray.index === 'number') {
      throw new UserError(`${source}: not a valid CSV file: line ${stray.lines}, column ${stray.index + 1}: a quote (") inside a cell that does not start with one; quote the whole cell and double the quotes in it ("a""b")`);
    }
    const uneven = error as { code?: unknown; lines?: unknown; record?: unknown };
    if (uneven.code === 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH' && typeof uneven.lines === 'number' && Array.isArray(uneven.record) && endLines.length > 0) {
      const fields = uneven.record.length;
      // A row of bare separators, wider than the header: a spreadsheet's empty row below its data.
      if ((uneven.record as unknown[]).every((cell) => cell === '')) {
        throw new UserError(
          `${source}: not a valid CSV file: line ${uneven.lines} holds only separators (${fields} empty fields, the header, line ${endLines[0]}, has ${headerFields}): delete that line (a spreadsheet's empty row)`,
        );
      }
      // A data row ending in a separator the header does not (a spreadsheet's or a script's trailing comma).
      if (fields === headerFields + 1 && uneven.record[fields - 1] === '') {
        throw new UserError(
          `${source}: not a valid CSV file: line ${uneven.lines} ends with a comma (an empty field ${fields} the header, line ${endLines[0]}, does not have): remove the trailing commas from the data rows`,
        );
      }
      // A title or Excel's "sep=," line above the column names reads as a header of one or two fields.
      const titleLine = endLines.length === 1 && fields > headerFields;
      throw new UserError(
        `${source}: not a valid CSV file: line ${uneven.lines} has ${fields} field${fields === 1 ? '' : 's'}, and line ${endLines[0]}, read as the header, has ${headerFields}` +
          (titleLine ? `: if line ${endLines[0]} is a title or a "sep=" line, remove it so that the file starts with its column names` : ''),
      );
    }
    throw new UserError(`${source}: not a valid CSV file: ${oneLineMessage(errorMessage(error))}`);
  }
  const writtenHeader = parsed[0];
  if (!writtenHeader || writtenHeader.length === 0) throw new UserError(`${source}: the file is empty`);
  // Names compared as text, not code units: "Zürich" typed on one machine and saved decomposed
  // (u + U+0308, as macOS file names and some editors write it) on another are one name.
  // Spaces inside a quoted name too (" d "), as around an unquoted one and in cells: a holdout
  // written with `d` matches the model's feature, and the fingerprint does not change.
  const header = writtenHeader.map((name) => columnKey(name));
  const labelName = columnKey(options.label);
  const rows = parsed.slice(1);
  // "row N" in messages is the line of the file the row starts on, blank lines counted, as an editor shows it.
  const rowNumbers = rows.map((record, r) => endLines[r + 1]! - lineBreaks(record));
  if (rows.length === 0) throw new UserError(`${source}: the file has a header but no data rows`);
  const labelIndex = header.indexOf(labelName);
  if (labelIndex < 0) {
    throw new UserError(`${source}: no label column ${quoted(labelName)} (columns: ${listed(header)})`);
  }
  const seen = new Set<string>();
  for (const name of header) {
    if (seen.has(name)) throw new UserError(`${source}: column ${quoted(name)} appears twice in the header`);
    seen.add(name);
  }
  // A column with no name would become a feature named "": most often the row index pandas' to_csv
  // writes, which a model would then learn the rows' order from.
  const unnamed = options.features ? -1 : header.findIndex((name, i) => i !== labelIndex && name.trim() === '');
  if (unnamed >= 0) {
    // A last column with neither a name nor a value is a comma at the end of every line, not pandas' index.
    if (unnamed === header.length - 1 && rows.every((record) => record[unnamed] === '')) {
      throw new UserError(`${source}: every line ends with a comma, which makes an empty column ${unnamed + 1} with no name: remove the trailing commas`);
    }
    throw new UserError(`${source}: column ${unnamed + 1} has no name in the header (pandas writes its row index so: save with index=False), or name it`);
  }
  const featureNames = options.features ? options.features.map((name) => columnKey(name)) : header.filter((_, i) => i !== labelIndex);
  if (!options.features && featureNames.length === 0) throw new UserError(`${source}: there are no feature columns besides the label`);
  const featureColumns = featureNames.map((name) => {
    const index = header.indexOf(name);
    if (index < 0 || index === labelIndex) throw new UserError(`${source}: no column ${quoted(name)} (columns: ${listed(header)})`);
    return index;
  });

  const x: number[][] = [];
  const rawLabels: string[] = [];
  rows.forEach((record, r) => {
    // Sized once (map), not grown by push: a grown array held twice the room a large file needs.
    const row = featureColumns.map((c) => {
      const cell = record[c]!;
      // Spaces inside a quoted cell (" 7 ") too, as around an unquoted one (csv-parse's trim).
      const value = parseDecimal(cell.trim());
      if (!Number.isFinite(value)) {
        throw new UserError(`${source}: line ${rowNumbers[r]}, column ${quoted(header[c]!)}: ${quoted(cell)} is not a finite number`);
      }
      if (Math.abs(value) > FLOAT32_MAX) {
        throw new UserError(`${source}: line ${rowNumbers[r]}, column ${quoted(header[c]!)}: ${cell} is outside the float32 range models compute in (±3.4e38)`);
      }
      return value;
    });
    x.push(row);
    // Spaces inside a quoted label too, as in a feature cell: " setosa" is the class setosa.
    const label = canonicalText((record[labelIndex] ?? '').trim());
    if (label === '') throw new UserError(`${source}: line ${rowNumbers[r]}: the label ${quoted(labelName)} is empty`);
    rawLabels.push(label);
  });

  // A number label with gaps written as NaN or NA would otherwise train a class "NaN", or read as
  // many classes: the rows without a label are the user's to drop. Not for data read for an
  // existing model (its classes are what they are), nor when the label is said to be classes (a
  // fault code "None" beside 101 and 205 is one).
  const missing = options.features || options.task === 'classification' ? [] : missingNumberLabels(rawLabels);
  if (missing.length > 0) {
    const [first, ...more] = missing;
    // Given as regression, the rows are gaps: no word of classes, which the user already ruled out.
    const fix =
      options.task === 'regression'
        ? `a regression target needs a number on every row: drop ${more.length === 0 ? 'that row' : 'those rows'}`
        : `drop the rows without a label, or, if ${quoted(rawLabels[first!]!)} is a class, ${AS_CLASSIFICATION}`;
    throw new UserError(`${source}: line ${rowNumbers[first!]}: the label ${quoted(labelName)} is missing (${quoted(rawLabels[first!]!)}) where the other rows hold numbers${moreRows(more, rowNumbers)}: ${fix}`);
  }

  // A number label with a stray text or infinite cell (a typo, "inf", "-") would otherwise read as
  // hundreds of classes, refused for their size without a word of the cell: named by its line.
  const strays = options.features || options.task !== undefined ? [] : straysInNumberLabel(rawLabels);
  if (strays.length > 0) {
    const [first, ...more] = strays;
    throw new UserError(
      `${source}: line ${rowNumbers[first!]}: the label ${quoted(labelName)} is ${quoted(clipped(rawLabels[first!]!))}, not a finite number, where the other rows hold numbers${moreRows(more, rowNumbers)}: ` +
        `fix or drop ${more.length === 0 ? 'that row' : 'those rows'}, or, if the labels are classes, ${AS_CLASSIFICATION}`,
    );
  }

  // Training data only: data read for an existing model (`features`) meets that model's mean, not its own.
  if (!options.features) assertFeatureSpansFitFloat32(x, featureNames, source);

  const task = options.task ?? inferTask(rawLabels);
  let y: number[];
  let classes: string[] = [];
  if (task === 'classification') {
    const className = classNaming(options.classNames ?? rawLabels);
    classes = sortedClassNames(rawLabels.map(className));
    if (classes.length < (options.minClasses ?? 2)) {
      throw new UserError(`${source}: the label ${quoted(labelName)} has a single class (${clipped(classes[0]!)}); need at least two`);
    }
    const index = new Map(classes.map((name, i) => [name, i]));
    y = rawLabels.map((label) => index.get(className(label))!);
  } else {
    y = rawLabels.map((label, r) => {
      const value = parseDecimal(label);
      if (!Number.isFinite(value) || Math.abs(value) > FLOAT32_MAX) {
        throw new UserError(`${source}: line ${rowNumbers[r]}: regression label ${quoted(label)} is not a finite float32 number`);
      }
      return value;
    });
    // A constant target has nothing to learn, as a single class has not.
    if ((options.minClasses ?? 2) > 1 && y.every((value) => value === y[0])) {
      throw new UserError(`${source}: the regression label ${quoted(labelName)} has a single value (${clipped(rawLabels[0]!)}); need at least two`);
    }
  }

  // Nothing to learn from, as from a single class: such a run "pruned" its model to one unit per
  // layer, within tolerance of a general model that ignored its inputs, and shipped it.
  if (!options.features && featureNames.every((_, c) => x.every((row) => row[c] === x[0]![c]))) {
    throw new UserError(`${source}: every feature column holds a single value, the same on every row: there is nothing to learn the label from`);
  }
  // Training data: its names go into the artifact's manifest.json, which must stay readable.
  if (!options.features) {
    assertNamesFitManifest(featureNames, classes, labelName, source);
    assertNamesPrintable(featureNames, classes, labelName, source);
  }
  // The fingerprint is of the values as written, before any rounding below: it names the data.
  const fingerprint = fingerprintOf(options.features ? [...featureNames, labelName] : header, x, rawLabels);
  const warnings = [
    ...(options.task === undefined && task === 'regression' ? fewValuedTarget(rawLabels, labelName) : []),
    ...(options.features ? [] : rowIdentifierColumns(x, featureNames)),
    ...(options.features ? [] : caseVariantClasses(classes, labelName)),
    ...(options.features || options.task !== undefined || task !== 'classification' ? [] : missingValueClasses(rawLabels, labelName, rowNumbers)),
    ...(options.features || task !== 'classification' ? [] : mergedSpellings(rawLabels, classNaming(rawLabels), labelName)),
    ...roundFeaturesDevicesCannotHold(x, featureNames),
    ...targetDevicesCannotHold(task === 'regression' ? y : [], labelName),
  ];
  return { featureNames, labelName, task, x, y, classes, fingerprint, warnings, rowLines: rowNumbers };
}

/**
 * A label column of non-numbers is a classification target; so is one of integers with few
 * distinct values (at most 20, and at most a tenth of the rows or three, whichever is more: a
 * 0/1/2 label on 30 rows is classes). Anything else is regression. Distinct values are counted as
 * classNaming names them.
 */
export function inferTask(labels: readonly string[]): Task {
  const numeric = labels.every((label) => Number.isFinite(parseDecimal(label)));
  if (!numeric) return 'classification';
  const distinct = new Set(labels.map(classNaming(labels)));
  const integers = [...distinct].every((name) => Number.isInteger(parseDecimal(name)));
  if (integers && distinct.size <= 20 && distinct.size <= Math.max(3, labels.length / 10)) return 'classification';
  return 'regression';
}

/** Cells that stand for a missing number (pandas', R's and spreadsheets' spellings), compared in lower case. */
const MISSING_NUMBER = new Set(['nan', 'na', 'n/a', '#n/a', 'null', 'none', '?']);

/** The index of the first label that marks a missing number in a label column otherwise of numbers; -1 if none. */
function missingNumberLabels(labels: readonly string[]): number[] {
  const isMissing = (label: string) => MISSING_NUMBER.has(label.trim().toLowerCase());
  const missing = labels.flatMap((label, r) => (isMissing(label) ? [r] : []));
  if (missing.length === 0) return [];
  const numbers = labels.filter((label) => !isMissing(label));
  return numbers.length > 0 && numbers.every((label) => Number.isFinite(parseDecimal(label))) ? missing : [];
}

/** How a user says the label is classes, on the CLI and in a job request (REST, gRPC) alike. */
const AS_CLASSIFICATION = 'give the task as classification (--task classification, or "task": "classification" in a job request)';

/** " (and 2 more such rows: lines 19, 202)" after the first row named; at most MAX_NAMED_ROWS more lines listed (eleven rows named in all). */
function moreRows(more: readonly number[], rowNumbers: readonly number[]): string {
  if (more.length === 0) return '';
  const listed = more.slice(0, MAX_NAMED_ROWS).map((r) => rowNumbers[r]).join(', ');
  const rest = more.length > MAX_NAMED_ROWS ? `, and ${more.length - MAX_NAMED_ROWS} more` : '';
  return ` (and ${more.length} more such row${more.length === 1 ? '' : 's'}: line${more.length === 1 ? '' : 's'} ${listed}${rest})`;
}
const MAX_NAMED_ROWS = 10;

/** At most this many of a number label's cells may be other than finite numbers for them to read as strays (typos) rather than classes. */
const MAX_STRAY_LABELS = 5;

/**
 * The indices of the labels that are not finite numbers, when they are a few strays among numbers
 * that would make a regression target on their own: at most MAX_STRAY_LABELS rows, and no such
 * value on more than two of them (a typo may be copied once; a value on three rows or more is a
 * class: "other" on 40 rows, "ungraded" beside grades); [] otherwise (all numbers, text classes, a
 * code beside integer classes or codes).
 */
function straysInNumberLabel(labels: readonly string[]): number[] {
  const isNumber = (label: string) => Number.isFinite(parseDecimal(label));
  const strays: number[] = [];
  const seen = new Map<string, number>();
  for (let r = 0; r < labels.length; r++) {
    if (isNumber(labels[r]!)) continue;
    strays.push(r);
    if (strays.length > MAX_STRAY_LABELS) return [];
    const count = (seen.get(labels[r]!) ?? 0) + 1;
    if (count > 2) return [];
    seen.set(labels[r]!, count);
  }
  if (strays.length === 0) return [];
  const numbers = labels.filter(isNumber);
  if (numbers.length < 2 || inferTask(numbers) !== 'regression' || codeLike(numbers)) return [];
  return strays;
}

/** Whole numbers that repeat as codes do (see CODE_LIKE_TARGET_VALUES): up to 100 of them, each on ten rows on average. */
function codeLike(labels: readonly string[]): boolean {
  const distinct = new Set(labels.map(classNaming(labels)));
  return distinct.size <= CODE_LIKE_TARGET_VALUES && distinct.size <= labels.length / 10 && [...distinct].every((name) => Number.isInteger(parseDecimal(name)));
}

/** How few distinct values a label inferred as a regression target has before a warning asks whether they are classes. */
const FEW_TARGET_VALUES = 20;
/**
 * Whole numbers may be codes beyond that (25 product categories), when each repeats on ten rows on
 * average, as codes do and measurements such as a disease progression score (214 values on 442
 * rows) do not; up to this many.
 */
const CODE_LIKE_TARGET_VALUES = 100;

/**
 * A label inferred as a regression target (its values are not integers, or there are too many
 * for its rows, or more than inferTask's 20 classes) with a handful of distinct values, or whole
 * numbers that repeat as codes do, may be classes (0.5/1.5 grades, 4 codes on 30 rows, 25 codes on
 * 500): one warning, naming them, so that a user who meant classes says so.
 */
function fewValuedTarget(labels: readonly string[], labelName: string): string[] {
  const distinct = [...new Set(labels.map(classNaming(labels)))];
  if (distinct.length > FEW_TARGET_VALUES && !codeLike(labels)) return [];
  const shown = distinct.sort((a, b) => parseDecimal(a) - parseDecimal(b)).slice(0, 5).map(clipped).join(', ');
  return [
    `the label ${quoted(labelName)} has only ${distinct.length} distinct values (${shown}${distinct.length > 5 ? ', ...' : ''}), so it was taken ` +
      `as a regression target: if they are classes, ${AS_CLASSIFICATION}`,
  ];
}

/**
 * Classes spelled more than one way in the file ("01" and "1", "1" and "1.0"): labels that are
 * all numbers are classes by value, so each such set is one class. Named in a warning: class
 * codes with leading zeros ("01", "1") may well be different classes to whoever wrote them.
 */
function mergedSpellings(labels: readonly string[], className: (label: string) => string, label: string): string[] {
  const spellings = new Map<string, Set<string>>();
  for (const written of labels) {
    const name = className(written);
    spellings.set(name, (spellings.get(name) ?? new Set()).add(written));
  }
  const merged = [...spellings.entries()].filter(([, written]) => written.size > 1);
  if (merged.length === 0) return [];
  const shown = merged.slice(0, 3).map(([name, written]) => `${[...written].slice(0, 4).map((w) => quoted(clipped(w))).join(', ')} are class ${quoted(clipped(name))}`).join('; ');
  return [
    `the label ${quoted(label)} writes classes more than one way (${shown}${merged.length > 3 ? '; …' : ''}): labels that are all numbers are classes by value; ` +
      'if these are different classes, give them names that are not numbers (c01, c1)',
  ];
}

/**
 * A label's class name. When every label is a number that a float64 holds exactly enough to
 * tell from every other (15 significant digits or fewer), classes are numeric values: "1", "1.0"
 * and "1e0" are one class, named canonically ("1"). Otherwise the name is the label as written:
 * 9007199254740992 and 9007199254740993 are one float64 but two classes.
 */
function classNaming(labels: readonly string[]): (label: string) => string {
  const byValue = classesAreValues(labels);
  // A label that is no number (a holdout's, read with a numeric model's classes) stays as written.
  return byValue ? (label) => (Number.isFinite(parseDecimal(label)) ? String(parseDecimal(label)) : label) : (label) => label;
}

/** Whether `labels` (a file's, or a model's classes) name classes by value: every one a number a float64 tells from the others. */
export function classesAreValues(labels: readonly string[]): boolean {
  return labels.every((label) => Number.isFinite(parseDecimal(label)) && significantDigits(label) <= 15);
}

/** The significant digits of a decimal numeral ("0.0120" and "1.2e-2" have 2, "1200" has 2). */
function significantDigits(numeral: string): number {
  const mantissa = numeral.trim().replace(/^[+-]/, '').replace(/[eE].*$/, '');
  return mantissa.replace('.', '').replace(/^0+/, '').replace(/0+$/, '').length;
}

function sortedClassNames(labels: readonly string[]): string[] {
  const distinct = [...new Set(labels)];
  const numeric = distinct.every((label) => Number.isFinite(parseDecimal(label)));
  // Labels one float64 cannot tell apart (kept as written) are ordered as text.
  return numeric ? distinct.sort((a, b) => parseDecimal(a) - parseDecimal(b) || (a < b ? -1 : a > b ? 1 : 0)) : distinct.sort();
}

/** Fewer rows than this say too little for a column of distinct whole numbers to look like an identifier. */
const IDENTIFIER_MIN_ROWS = 20;

/**
 * Feature columns that look like a row number (the "id" or "index" column a spreadsheet or
 * database export carries): a different whole number on every row, together a run without gaps
 * (1 to 150, in any order). The model learns the rows' order from such a column (on data sorted
 * by class, the class itself), and devices have no such input to feed it. Named in a warning, not
 * refused: a measurement can look the same, rarely. A timestamp or an identifier with gaps is not
 * caught.
 */
/**
 * Classes whose names differ only in letter case, spacing or invisible characters ("SETOSA" and
 * "setosa", "Iris setosa" and "Iris  setosa", "setosa" and "setosa" with a zero-width space): most
 * often one class written two ways, which the model would learn as two.
 * One warning naming them (the training data's only: a holdout's classes are the model's).
 */
function caseVariantClasses(classes: readonly string[], label: string): string[] {
  const byFolded = new Map<string, string[]>();
  for (const name of classes) {
    // Compatibility forms (full-width letters, ligatures) and invisible characters (a zero-width space) folded too.
    const folded = name.normalize('NFKC').toLowerCase().replace(/\p{Cf}/gu, '').replace(/\s+/g, ' ');
    byFolded.set(folded, [...(byFolded.get(folded) ?? []), name]);
  }
  const variants = [...byFolded.values()].filter((names) => names.length > 1);
  if (variants.length === 0) return [];
  const shown = variants.slice(0, 3).map((names) => names.map((name) => quoted(clipped(name))).join(' and ')).join('; ');
  return [
    `the label ${quoted(label)} has classes that differ only in letter case, spacing or invisible characters (${shown}${variants.length > 3 ? '; …' : ''}): ` +
      'each is a class of its own to the model; if they are one class, write it one way',
  ];
}

/**
 * Text classes spelled as a missing value is written ("NA", "?", "null"): a number label with such
 * gaps is refused (missingNumberLabels), but among text classes it is a class as written, which
 * may be rows without a label that the model learns to predict "NA" for. A warning naming it and
 * its rows (not when the task was given: the refusal of such a number label says to give it if
 * "NA" is a class); a class of that name is kept.
 */
function missingValueClasses(labels: readonly string[], label: string, rowNumbers: readonly number[]): string[] {
  // Not "None": a class of its own beside "Mild" and "Severe" far more often than a gap.
  const rows = labels.flatMap((name, r) => (name.trim().toLowerCase() !== 'none' && MISSING_NUMBER.has(name.trim().toLowerCase()) ? [r] : []));
  if (rows.length === 0) return [];
  const names = [...new Set(rows.map((r) => labels[r]!))].map((name) => quoted(name)).join(', ');
  const [first, ...more] = rows;
  return [
    `the label ${quoted(label)} has ${names}, the way a missing value is written, as a class: line ${rowNumbers[first!]}${moreRows(more, rowNumbers)}; ` +
      'if those rows have no label, drop them (a class of that name is kept as written)',
  ];
}

function rowIdentifierColumns(x: readonly (readonly number[])[], featureNames: readonly string[]): string[] {
  if (x.length < IDENTIFIER_MIN_ROWS) return [];
  const found = featureNames.filter((_, c) => {
    let min = Infinity;
    let max = -Infinity;
    const seen = new Set<number>();
    for (const row of x) {
      const value = row[c]!;
      if (!Number.isInteger(value) || seen.has(value)) return false;
      min = Math.min(min, value);
      max = Math.max(max, value);
      seen.add(value);
    }
    return max - min === x.length - 1;
  });
  if (found.length === 0) return [];
  const one = found.length === 1;
  const names = found.slice(0, 5).map(quoted).join(', ') + (found.length > 5 ? ` and ${found.length - 5} more` : '');
  return [
    `${one ? 'feature' : 'features'} ${names} ${one ? 'looks' : 'look'} like a row number (a different whole number on ` +
      `every row, together a run without gaps): the model learns the rows' order from ${one ? 'it' : 'them'}, and devices must feed ` +
      `${one ? 'it' : 'them'} too; drop ${one ? 'it' : 'them'} from the CSV unless ${one ? 'it is a measurement' : 'they are measurements'}`,
  ];
}

/**
 * A feature is rounded to float32 when that moves some value by more than this fraction of the
 * column's standard deviation. Rounding moves a value by at most |value| × 2^-24 ≈ 6e-8 |value|, so
 * this fires only for columns whose values sit more than ~1700 standard deviations from zero
 * (timestamps, serial numbers, offsets); the shipped data sets stay below 6e-7, far under it. A
 * shift of 1e-4 standard deviations moves the standardized input the network sees by 1e-4, the
 * order of the agreement the artifact tests ask of model.onnx and the tfjs model.
 */
const FLOAT32_ROUNDING_TOLERANCE = 1e-4;

/**
 * Devices feed model.onnx float32 features, while training and scoring read them as float64. For
 * a column far from zero relative to its spread, float32 rounding erases its detail, and the
 * model that was tested would see other inputs than the one shipped (a timestamp 1.6e9 + 7·row
 * moves by up to 64 in float32). Such columns are rounded to float32 in place, so training, scores
 * and the exported model all see what a device will feed, and named in the returned warning.
 * Columns float32 holds closely enough are left untouched, so results on them do not change.
 */
function roundFeaturesDevicesCannotHold(x: number[][], featureNames: readonly string[]): string[] {
  const lossy: { name: string; shift: number }[] = [];
  featureNames.forEach((name, c) => {
    let mean = 0;
    for (const row of x) mean += row[c]!;
    mean /= x.length;
    let squares = 0;
    let moved = 0;
    let constant = true;
    for (const row of x) {
      squares += (row[c]! - mean) ** 2;
      moved = Math.max(moved, Math.abs(Math.fround(row[c]!) - row[c]!));
      constant &&= row[c] === x[0]![c];
    }
    const std = Math.sqrt(squares / x.length);
    if (moved === 0 || (!constant && moved <= FLOAT32_ROUNDING_TOLERANCE * std)) return;
    for (const row of x) row[c] = Math.fround(row[c]!);
    // A constant column has no detail to lose: rounded (else training would see value − float32(mean)
    // where a device feeds 0), but nothing to warn about. Its float64 std is not exactly 0 (the
    // mean of equal values is not always that value), so constancy is checked on the values.
    if (!constant) lossy.push({ name, shift: moved / std });
  });
  if (lossy.length === 0) return [];
  const names = lossy.slice(0, 5).map(({ name }) => quoted(name));
  const more = lossy.length > 5 ? ` and ${lossy.length - 5} more` : '';
  const worst = Math.max(...lossy.map(({ shift }) => shift));
  const one = lossy.length === 1;
  return [
    `${one ? 'feature' : 'features'} ${names.join(', ')}${more} ${one ? 'is' : 'are'} too far from zero for ${one ? 'its' : 'their'} spread to ` +
      `survive float32, which devices feed the model (rounding moves a value by up to ${worst.toPrecision(2)} standard deviations): ` +
      `training and scores use ${one ? 'it' : 'them'} rounded to float32 too, and detail is lost; subtract an offset (such as the ` +
      `column's minimum) before pruning`,
  ];
}

/**
 * Every model standardizes a feature as (x − mean) / scale, and devices compute it in float32
 * (model.onnx subtracts the mean when it cannot fold it into the first layer; scaling.json's
 * readers subtract it too). The mean lies between the column's smallest and largest values, so
 * when those are at most FLOAT32_MAX apart no x − mean overflows. Wider columns (values of both
 * signs near ±3.4e38) made model.onnx answer NaN for rows the report scored as right.
 */
function assertFeatureSpansFitFloat32(x: readonly (readonly number[])[], names: readonly string[], source: string): void {
  names.forEach((name, c) => {
    let min = Infinity;
    let max = -Infinity;
    for (const row of x) {
      if (row[c]! < min) min = row[c]!;
      if (row[c]! > max) max = row[c]!;
    }
    if (max - min > FLOAT32_MAX) {
      throw new UserError(
        `${source}: column ${quoted(name)} spans from ${min} to ${max}, further apart than float32 holds (±3.4e38), which models ` +
          'subtract its mean in: scale the column down (divide it by a power of ten)',
      );
    }
  });
}

/** Of the MAX_MANIFEST_BYTES a manifest.json may have, what its feature, class and label names may take (the rest is far under 16 KiB). */
const MANIFEST_NAMES_BYTES = MAX_MANIFEST_BYTES - 16 * 1024;

/**
 * The names a model's manifest.json lists (features, classes, the label), as written there: JSON,
 * one per indented line. More than MANIFEST_NAMES_BYTES would make a manifest that verify, push and
 * devices refuse to read (over MAX_MANIFEST_BYTES): refused before any training.
 */
function assertNamesFitManifest(featureNames: readonly string[], classes: readonly string[], label: string, source: string): void {
  const entry = (name: string) => Buffer.byteLength(JSON.stringify(name), 'utf8') + 6;
  let bytes = entry(label);
  for (const name of featureNames) bytes += entry(name);
  for (const name of classes) bytes += entry(name);
  if (bytes > MANIFEST_NAMES_BYTES) {
    throw new UserError(
      `${source}: the column and class names take ${bytes} bytes in the model's manifest.json, more than the ${MANIFEST_NAMES_BYTES} it has room for ` +
        `(a manifest is read up to ${MAX_MANIFEST_BYTES} bytes): shorten the names or use fewer columns`,
    );
  }
}

/**
 * A NUL character in a feature, class or label name: manifest.json may hold none (readManifest
 * refuses it, as the registry and devices do), so the artifact the run would write, after all its
 * training, would fail its own verify. Refused before any training.
 */
function assertNamesPrintable(featureNames: readonly string[], classes: readonly string[], label: string, source: string): void {
  const feature = featureNames.find((name) => name.includes('\0'));
  if (feature !== undefined) throw new UserError(`${source}: column ${quoted(feature)} has a NUL character (U+0000) in its name, which a model's manifest.json cannot hold`);
  if (label.includes('\0')) throw new UserError(`${source}: the label ${quoted(label)} has a NUL character (U+0000) in its name, which a model's manifest.json cannot hold`);
  const className = classes.find((name) => name.includes('\0'));
  if (className !== undefined) {
    throw new UserError(`${source}: the label ${quoted(label)} has a class ${quoted(className)} with a NUL character (U+0000), which a model's manifest.json cannot hold`);
  }
  // A line break or tab in a name (a quoted cell across lines) would split every listing, log line
  // and prediction that prints it: refused as NUL is, by name, with the character spelled out.
  const brokenFeature = featureNames.find(hasControl);
  if (brokenFeature !== undefined) throw new UserError(`${source}: column ${quoted(brokenFeature)} has ${controlIn(brokenFeature)} in its name; names are printed on one line, as written: rename it`);
  if (hasControl(label)) throw new UserError(`${source}: the label ${quoted(label)} has ${controlIn(label)} in its name; names are printed on one line, as written: rename it`);
  const brokenClass = classes.find(hasControl);
  if (brokenClass !== undefined) {
    throw new UserError(`${source}: the label ${quoted(label)} has a class ${quoted(brokenClass)} with ${controlIn(brokenClass)}; class names are printed on one line, as written: fix the label cells`);
  }
}

/**
 * Control characters (C0, DEL, C1: U+009B is a one-character escape sequence on some terminals),
 * the line and paragraph separators, and the bidirectional embeddings, overrides and isolates,
 * which make the rest of a line read in another order than it is stored: the characters a
 * rollout reason or a device label may not hold either (server/rollout/operator-text.ts).
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0001-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const CONTROL_NAMES: Record<string, string> = { '\n': 'a line feed', '\r': 'a carriage return', '\t': 'a tab', '\u2028': 'a line separator', '\u2029': 'a paragraph separator' };
const TEXT_DIRECTION = /[\u202a-\u202e\u2066-\u2069]/;

function hasControl(name: string): boolean {
  return CONTROL.test(name);
}

/** "a line feed (U+000A)": the first control character of `name`. */
function controlIn(name: string): string {
  const char = CONTROL.exec(name)![0];
  const code = `U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
  return `${CONTROL_NAMES[char] ?? (TEXT_DIRECTION.test(char) ? 'a text-direction control' : 'a control character')} (${code})`;
}

/**
 * A header line (the first that is not blank) with no comma but semicolons or tabs, separators
 * inside quoted names not counted: a spreadsheet's export in a locale whose decimal separator is
 * the comma (`5,1;3,5;...`), or a TSV. Read as CSV it was one column, reported as a missing label
 * column (listing the whole header as its name) or, with decimal commas, as "Invalid Record
 * Length: expect 1, got 5". Such a header is never a usable data set (a single column has no
 * features besides the label), so naming the separator costs no valid file. A header with commas
 * in its names too (`len, cm<TAB>width`) is named so when the next line has as many of the
 * separator and not as many commas.
 */
function assertCommaSeparated(text: string, source: string, label: string): void {
  // The header is the first line with something on it: csv-parse skips blank lines above it.
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/, 64);
  const written = lines.filter((line) => line.trim() !== '');
  const header = written[0];
  if (header === undefined) return;
  // Separators inside a quoted name ("Länge, Kelch (cm)") separate nothing.
  const count = (line: string, separator: string) => splitOutsideQuotes(line, separator).length - 1;
  const found = ([['semicolons', ';'], ['tabs', '\t']] as const).find(([, char]) => {
    const inHeader = count(header, char);
    if (inHeader === 0) return false;
    if (count(header, ',') === 0) return true;
    // Commas in the header's names too (`len, cm<TAB>width`): the separator is the one the next
    // line has as often, and the comma not; or the one that gives the label column, where commas
    // do not (`Länge, cm;Breite, cm;label` over decimal commas, `5,1;3,5;x`: as many of each).
    const next = written[1];
    if (next !== undefined && count(next, char) === inHeader && count(next, ',') !== count(header, ',')) return true;
    const names = (separator: string) => splitOutsideQuotes(header, separator).map((name) => columnKey(name.replace(/^\s*"|"\s*$/g, '')));
    const wanted = columnKey(label);
    return names(char).includes(wanted) && !names(',').includes(wanted);
  });
  if (!found) return;
  throw new UserError(
    `${source}: the header is separated by ${found[0]}, not commas: fleetprune reads comma-separated CSV with a point as the decimal separator; ` +
      'export it so (e.g. "CSV UTF-8 (comma delimited)" with an English number format)',
  );
}

/** `line`'s cells between `separator`s outside quoted cells, as written (quotes and all). */
function splitOutsideQuotes(line: string, separator: string): string[] {
  const cells: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '"') quoted = !quoted;
    else if (!quoted && line[i] === separator) {
      cells.push(line.slice(start, i));
      start = i + 1;
    }
  }
  cells.push(line.slice(start));
  return cells;
}

/** The line breaks inside a record's quoted cells: its first line is this many before its last. */
function lineBreaks(record: readonly string[]): number {
  return record.reduce((count, cell) => count + (cell.match(/\r\n|\r|\n/g)?.length ?? 0), 0);
}

/**
 * model.onnx computes a regression prediction in float32 too, ending in `+ target mean`: for a
 * target far from zero for its spread (a timestamp, an elevation above sea level in mm), a
 * device's predictions can only take values float32 steps apart, coarser than the target's
 * detail, and the scores (computed in float64) describe a better model than devices run. The same
 * measure as for features (rounding moving a value by more than FLOAT32_ROUNDING_TOLERANCE of the
 * spread) names it in a warning; a constant target is refused before this.
 */
function targetDevicesCannotHold(y: readonly number[], labelName: string): string[] {
  if (y.length === 0) return [];
  const mean = y.reduce((a, b) => a + b, 0) / y.length;
  const std = Math.sqrt(y.reduce((a, b) => a + (b - mean) ** 2, 0) / y.length);
  // A loop, not Math.max(...y): a spread of a million rows overflows the stack.
  const moved = y.reduce((worst, value) => Math.max(worst, Math.abs(Math.fround(value) - value)), Math.abs(Math.fround(mean) - mean));
  if (!(moved > FLOAT32_ROUNDING_TOLERANCE * std)) return [];
  return [
    `the label ${quoted(labelName)} is too far from zero for its spread to survive float32, which devices compute the model in ` +
      `(rounding moves a value by up to ${(moved / std).toPrecision(2)} standard deviations): their predictions are coarser than ` +
      `the scores, computed in float64, show; subtract an offset (such as the column's minimum) before pruning`,
  ];
}

/** At most this many characters of a cell or name in an error message (binary files make long garbage). */
const SHOWN_CHARACTERS = 40;

function clipped(text: string): string {
  return text.length > SHOWN_CHARACTERS ? `${text.slice(0, SHOWN_CHARACTERS)}…` : text;
}

/**
 * A cell or column name for an error message: quoted, escaped (JSON) and clipped, with what JSON
 * leaves as it is escaped too: C1 controls, and the invisible and text-direction characters
 * (a zero-width space, U+202E), so two names that differ only by one show the difference, and
 * none reverses the rest of the line.
 */
function quoted(text: string): string {
  return JSON.stringify(clipped(text)).replace(/[\u0080-\u009f\p{Cf}\u2028\u2029]/gu, (char) => `\\u${char.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

/** A header for an error message: its first columns, each quoted. */
function listed(header: readonly string[]): string {
  const shown = header.slice(0, 20).map(quoted).join(', ');
  return header.length > 20 ? `${shown}, … ${header.length - 20} more` : shown;
}

/**
 * `dataset` narrowed to the rows `x` and `y` (a share of its rows, each perhaps changed), with the
 * fingerprint of those rows: the one a CSV file of them gives (header the features then the
 * label; numbers as JavaScript writes them), not the whole file's.
 */
export function datasetOfRows(dataset: Dataset, x: number[][], y: number[]): Dataset {
  const labels = y.map((value) => (dataset.task === 'classification' ? dataset.classes[value]! : String(value)));
  // Its rows are no longer the file's: their lines are not known.
  const { rowLines: _lines, ...rest } = dataset;
  return { ...rest, x, y, fingerprint: fingerprintOf([...dataset.featureNames, dataset.labelName], x, labels) };
}

/**
 * Header and rows (features as numbers, label last) as CSV lines. Names and labels holding a
 * comma, quote or line break are CSV-quoted, so that `a,b` and `"a,b"` are different content;
 * numbers never hold one. Every other cell is hashed as it always was, so the fingerprints of
 * existing artifacts' data (the shipped sets have no such cells) stay the same.
 */
function fingerprintOf(header: readonly string[], x: readonly number[][], labels: readonly string[]): string {
  const hash = createHash('sha256');
  hash.update(header.map(csvCell).join(',') + '\n');
  x.forEach((row, i) => hash.update(row.join(',') + ',' + csvCell(labels[i]!) + '\n'));
  return hash.digest('hex');
}

function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
