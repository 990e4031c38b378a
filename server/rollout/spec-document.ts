import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { MAX_NESTING_DEPTH, untrustedDataProblem } from '../../shared/util/untrusted-data.ts';
import { lineAndColumn } from '../../shared/util/line-and-column.ts';
import { printable } from './operator-text.ts';

/** The largest rollout spec accepted (a spec listing thousands of devices is still far below). */
export const MAX_SPEC_BYTES = 1024 * 1024;

const COLLECTIONS = new Set(['block-map', 'block-seq', 'flow-collection']);

const require = createRequire(import.meta.url);
let loadedYaml: typeof Yaml | undefined;
/** yaml (72 modules, about 0.06 CPU-s) is loaded at the first spec read, not at every server start. */
function yaml(): typeof Yaml {
  return (loadedYaml ??= require('yaml') as typeof Yaml);
}

/**
 * The YAML text's syntax tokens (yaml's CST), or null when it nests collections deeper than `max`.
 * yaml's lexer and parser are iterative (their stack is an array) but its composer recurses, so
 * nesting must be bounded before composing: 100k levels overflow the stack or exhaust memory.
 * Stops at the first level too deep. The tokens are composed as they are: parsing the text again
 * (yaml.parseDocument) would double the time a large spec takes to read.
 */
function parseShallow(text: string, max: number): Yaml.CST.Token[] | null {
  const { Lexer, Parser } = yaml();
  const parser = new Parser();
  const tokens: Yaml.CST.Token[] = [];
  for (const lexeme of new Lexer().lex(text)) {
    // Finished documents; only the open collections on the parser's stack matter for the depth.
    for (const token of parser.next(lexeme)) tokens.push(token);
    if (parser.stack.length > max && parser.stack.filter((token) => COLLECTIONS.has(token.type)).length > max) return null;
  }
  for (const token of parser.end()) tokens.push(token);
  return tokens;
}

/**
 * Rollout spec text (YAML, or JSON, which is YAML) as plain data. Every problem is a UserError
 * naming it: too large, nested too deeply, not YAML, an unresolved alias or too many aliases
 * (billion laughs), a `__proto__` key.
 */
export function readSpecDocument(text: string, source?: string): unknown {
  const prefix = source ? `${source}: ` : '';
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_SPEC_BYTES) throw new UserError(`${prefix}the spec is ${bytes} bytes; at most ${MAX_SPEC_BYTES} are accepted`);
  const tokens = parseShallow(text, MAX_NESTING_DEPTH);
  if (!tokens) throw new UserError(`${prefix}the spec is nested deeper than ${MAX_NESTING_DEPTH} levels`);
  let document: unknown;
  try {
    // logLevel 'error': yaml warns about a collection used as a mapping key (`? [a, b]: c`, which
    // validation then refuses as an unknown field) with process.emitWarning, an unstructured line
    // on the server's stderr for each spec a client sends.
    const options = { prettyErrors: true, uniqueKeys: true, logLevel: 'error' } as const;
    const documents = [...new (yaml().Composer)(options).compose(tokens, true, text.length)];
    // An empty document (a trailing `---`, one holding only comments) is no second spec.
    const filled = documents.filter((document) => !isEmptyDocument(document));
    if (filled.length > 1) {
      const line = text.slice(0, filled[1]!.range[0]).split('\n').length;
      throw new UserError(`${prefix}the text holds ${filled.length} YAML documents (a second one starts at line ${line}, after ---); give one rollout spec at a time`);
    }
    // No document at all (an empty text): yaml's own empty one.
    const parsed = filled[0] ?? documents[0] ?? yaml().parseDocument(text, options);
    if (parsed.errors.length > 0) throw parsed.errors[0];
    // Aliases are expanded here: an unknown anchor or too many aliases throw a ReferenceError.
    document = parsed.toJS({ maxAliasCount: 100 });
  } catch (error) {
    if (error instanceof UserError) throw error;
    if (error instanceof yaml().YAMLParseError) {
      const where = errorPosition(text, error);
      // yaml's pretty message repeats the position and ends in a colon before its code frame (the lines below it).
      const what = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '').replace(/:$/, '');
      throw new UserError(printable(`${prefix}not valid YAML or JSON (${where}): ${what}`));
    }
    throw new UserError(printable(`${prefix}not valid YAML or JSON: ${errorMessage(error).split('\n')[0]}`));
  }
  // maxAliasCount bounds the aliases, not what they repeat: 99 aliases of a 90,000-item list in a
  // 600 KB spec are 9 million values, whose checks held the server's event loop for some 15 s.
  if (holdsMoreValuesThan(document, MAX_SPEC_VALUES)) {
    throw new UserError(`${prefix}the spec's aliases expand it to more than ${MAX_SPEC_VALUES} values; write it without repeating large anchors, or an anchor inside itself`);
  }
  const problem = untrustedDataProblem(document) ?? typedValueProblem(document);
  // Escaped to one line: the path holds the spec's own keys.
  if (problem) throw new UserError(printable(`${prefix}invalid rollout spec: ${problem.path || '(spec)'}: ${problem.message}`));
  return document;
}

/**
 * Where a YAML error is, as `line L, column C` (both from 1). The composer's errors carry only an
 * offset (yaml.parseDocument turns it into a line and column, but would compose the text again).
 */
function errorPosition(text: string, error: Yaml.YAMLParseError): string {
  if (error.linePos?.[0]) return `line ${error.linePos[0].line}, column ${error.linePos[0].col}`;
  const offset = error.pos?.[0];
  return offset === undefined || offset < 0 ? 'document' : lineAndColumn(text, offset);
}

/** A document with nothing in it: yaml composes one as a null scalar spanning no source. */
function isEmptyDocument(document: Yaml.Document.Parsed): boolean {
  const contents = document.contents as { value?: unknown; range?: [number, number, number] } | null;
  return document.errors.length === 0 && (contents === null || (contents.value === null && contents.range !== undefined && contents.range[0] === contents.range[1]));
}

/** Values (list items, mapping values) a spec may hold with its aliases expanded: without aliases, each takes at least a byte. */
const MAX_SPEC_VALUES = MAX_SPEC_BYTES;

/** Whether `document` holds more than `max` values, an aliased one counted at each use; stops at the first one over. */
function holdsMoreValuesThan(document: unknown, max: number): boolean {
  const pending: unknown[] = [document];
  let count = 0;
  while (pending.length > 0) {
    const value = pending.pop();
    if (++count > max) return true;
    if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value) || value instanceof Map || value instanceof Set) continue;
    for (const item of Array.isArray(value) ? value : Object.values(value)) pending.push(item);
  }
  return false;
}

/**
 * Values of YAML's typed tags, which a spec has no use for. `!!omap` and `!!set` become a JS Map
 * and Set, which validation reads as objects without keys: `matchLabels: !!omap [{pilot: "true"}]`
 * would select every device. `!!binary` becomes a Buffer (validation listed its methods as
 * unknown keys) and `!!timestamp` a Date. The first one found.
 */
function typedValueProblem(document: unknown): { path: string; message: string } | null {
  const pending: { value: unknown; path: string }[] = [{ value: document, path: '' }];
  while (pending.length > 0) {
    const { value, path } = pending.pop()!;
    if (value instanceof Map || value instanceof Set) {
      return { path, message: `a YAML ${value instanceof Map ? '!!omap' : '!!set'} is not accepted; write a plain mapping or list` };
    }
    if (ArrayBuffer.isView(value)) return { path, message: 'a YAML !!binary is not accepted; write text' };
    if (value instanceof Date) return { path, message: 'a YAML !!timestamp is not accepted; write it as a quoted string' };
    if (value === null || typeof value !== 'object') continue;
    if (Array.isArray(value)) value.forEach((item, index) => pending.push({ value: item, path: `${path}[${index}]` }));
    else for (const [key, item] of Object.entries(value)) pending.push({ value: item, path: path === '' ? key : `${path}.${key}` });
  }
  return null;
}
