import { InvalidArgumentError } from 'commander';
import { RESERVED_LABEL_KEYS } from '../../shared/protocol/agent-config.ts';
import { controlCharacterIn } from '../rollout/operator-text.ts';

/**
 * `site=osaka,hw=pi4` → {site: 'osaka', hw: 'pi4'}; commander reports a bad value with the flag's
 * name. A repeated flag adds to the pairs of the earlier ones (commander passes them as
 * `previous`): `--selector site=osaka --selector hw=pi4` is both, never just the last. A comma
 * within a value is written `\,` (`place=Osaka\, Japan`), as `devices list` shows it, and the
 * backslashes right before it or at the value's end are doubled (`path=C:\\`); any other backslash
 * is itself (`share=\\srv\x`).
 */
export function parseLabelPairs(value: string, previous?: Record<string, string>): Record<string, string> {
  const labels: Record<string, string> = { ...previous };
  if (value.trim() === '') return labels;
  for (const part of splitPairs(value)) {
    const at = part.indexOf('=');
    const key = part.slice(0, at).trim();
    if (at <= 0 || key === '') throw new InvalidArgumentError(`"${part}" is not key=value (expected key=value[,key=value...]; a comma within a value is \\,)`);
    if (RESERVED_LABEL_KEYS.has(key)) throw new InvalidArgumentError(`label key "${key}" is reserved`);
    if (Object.hasOwn(labels, key)) throw new InvalidArgumentError(`label ${key} is given twice`);
    const value = unescapeValue(part.slice(at + 1).trim());
    // As the server refuses them (a value shown on one line in tables and logs), said up front.
    const found = controlCharacterIn(value);
    if (found) throw new InvalidArgumentError(`label ${key}: the value must not contain control characters such as newlines or escape sequences (found ${found})`);
    labels[key] = value;
  }
  return labels;
}

/** `a=1,b=x\,y` → ['a=1', 'b=x\,y']: split at the commas an odd run of backslashes does not escape (undone by unescapeValue). */
function splitPairs(text: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') {
      run++;
      continue;
    }
    if (text[i] === ',' && run % 2 === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
    run = 0;
  }
  parts.push(text.slice(start));
  return parts;
}

/**
 * A value as given: a run of backslashes before a comma is halved, its odd last one escaping the
 * comma; one at the end is halved, rounding up (a single `\` typed there is itself).
 */
function unescapeValue(text: string): string {
  return text.replace(/(\\+)(,|$)/g, (_, run: string, after: string) => '\\'.repeat(after === ',' ? (run.length - 1) / 2 : Math.ceil(run.length / 2)) + after);
}

/**
 * A label as `devices list` shows it, in the form --labels and --selector take: key=value, a comma
 * in the value escaped and the backslashes before it, or ending the value, doubled.
 */
export function labelPairText(key: string, value: string): string {
  return `${key}=${value.replace(/(\\*)(,|$)/g, (_, run: string, after: string) => run + run + (after === ',' ? '\\,' : ''))}`;
}
