import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { MAX_NESTING_DEPTH, untrustedDataProblem } from '../../shared/util/untrusted-data.ts';

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
 * Whether YAML text nests collections deeper than `max`. yaml's lexer and parser are iterative
 * (their stack is an array) but its composer recurses, so nesting must be bounded before
 * composing: 100k levels overflow the stack or exhaust memory. Stops at the first level too deep.
 */
function nestedDeeperThan(text: string, max: number): boolean {
  const { Lexer, Parser } = yaml();
  const parser = new Parser();
  for (const lexeme of new Lexer().lex(text)) {
    for (const _token of parser.next(lexeme)) {
      // Finished documents; only the open collections on the parser's stack matter here.
    }
    if (parser.stack.length > max && parser.stack.filter((token) => COLLECTIONS.has(token.type)).length > max) return true;
  }
  return false;
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
  if (nestedDeeperThan(text, MAX_NESTING_DEPTH)) throw new UserError(`${prefix}the spec is nested deeper than ${MAX_NESTING_DEPTH} levels`);
  let document: unknown;
  try {
    const parsed = yaml().parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (parsed.errors.length > 0) throw parsed.errors[0];
    // Aliases are expanded here: an unknown anchor or too many aliases throw a ReferenceError.
    document = parsed.toJS({ maxAliasCount: 100 });
  } catch (error) {
    if (error instanceof yaml().YAMLParseError) {
      const where = error.linePos?.[0] ? `line ${error.linePos[0].line}, column ${error.linePos[0].col}` : 'document';
      throw new UserError(`${prefix}not valid YAML or JSON (${where}): ${error.message.split('\n')[0]}`);
    }
    throw new UserError(`${prefix}not valid YAML or JSON: ${errorMessage(error).split('\n')[0]}`);
  }
  const problem = untrustedDataProblem(document) ?? orderedCollectionProblem(document);
  if (problem) throw new UserError(`${prefix}invalid rollout spec: ${problem.path || '(spec)'}: ${problem.message}`);
  return document;
}

/**
 * YAML's `!!omap` and `!!set` become a JS Map and Set, which validation reads as objects without
 * keys: `matchLabels: !!omap [{pilot: "true"}]` would select every device. The first one found.
 */
function orderedCollectionProblem(document: unknown): { path: string; message: string } | null {
  const pending: { value: unknown; path: string }[] = [{ value: document, path: '' }];
  while (pending.length > 0) {
    const { value, path } = pending.pop()!;
    if (value instanceof Map || value instanceof Set) {
      return { path, message: `a YAML ${value instanceof Map ? '!!omap' : '!!set'} is not accepted; write a plain mapping or list` };
    }
    if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) continue;
    if (Array.isArray(value)) value.forEach((item, index) => pending.push({ value: item, path: `${path}[${index}]` }));
    else for (const [key, item] of Object.entries(value)) pending.push({ value: item, path: path === '' ? key : `${path}.${key}` });
  }
  return null;
}
