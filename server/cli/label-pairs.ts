import { InvalidArgumentError } from 'commander';
import { RESERVED_LABEL_KEYS } from '../../shared/protocol/agent-config.ts';
import { controlCharacterIn } from '../rollout/operator-text.ts';

/**
 * `site=osaka,hw=pi4` → {site: 'osaka', hw: 'pi4'}; commander reports a bad value with the flag's
 * name. A repeated flag adds to the pairs of the earlier ones (commander passes them as
 * `previous`): `--selector site=osaka --selector hw=pi4` is both, never just the last.
 */
export function parseLabelPairs(value: string, previous?: Record<string, string>): Record<string, string> {
  const labels: Record<string, string> = { ...previous };
  if (value.trim() === '') return labels;
  for (const part of value.split(',')) {
    const at = part.indexOf('=');
    const key = part.slice(0, at).trim();
    if (at <= 0 || key === '') throw new InvalidArgumentError(`"${part}" is not key=value (expected key=value[,key=value...])`);
    if (RESERVED_LABEL_KEYS.has(key)) throw new InvalidArgumentError(`label key "${key}" is reserved`);
    if (Object.hasOwn(labels, key)) throw new InvalidArgumentError(`label ${key} is given twice`);
    const value = part.slice(at + 1).trim();
    // As the server refuses them (a value shown on one line in tables and logs), said up front.
    const found = controlCharacterIn(value);
    if (found) throw new InvalidArgumentError(`label ${key}: the value must not contain control characters such as newlines or escape sequences (found ${found})`);
    labels[key] = value;
  }
  return labels;
}
