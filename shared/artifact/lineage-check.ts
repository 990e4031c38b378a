import type { Manifest } from './manifest.ts';

/** The largest seed (the splits' and training's random generators take 31 bits): prune's --seed and a lineage's seed. */
export const MAX_SEED = 2 ** 31 - 1;

/** The methods that make models: `general` (the large network prune trains) and `odf2nna` (the pruned one). */
const METHODS = ['general', 'odf2nna'] as const;

/**
 * What is wrong with a manifest's lineage beyond its schema, one line each naming the field: a
 * data fingerprint that is not a SHA-256 (prune's is of the data it read), a method prune does not
 * have, a seed outside the range it takes, and a method at odds with its ε (a pruned model has
 * one, a general one none). The registry shows the lineage as the
 * version's history, and verify vouches for it: a signed manifest can say anything.
 */
export function lineageProblems(lineage: Manifest['lineage']): string[] {
  const problems: string[] = [];
  const quoted = (value: string) => JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (!/^[0-9a-f]{64}$/.test(lineage.dataFingerprint)) problems.push(`lineage.dataFingerprint: must be 64 lowercase hex digits (the SHA-256 prune computes of the data), not ${quoted(lineage.dataFingerprint)}`);
  if (!(METHODS as readonly string[]).includes(lineage.method)) problems.push(`lineage.method: must be ${METHODS.join(' or ')}, not ${quoted(lineage.method)}`);
  if (lineage.seed !== null && (lineage.seed < 0 || lineage.seed > MAX_SEED)) problems.push(`lineage.seed: must be from 0 to ${MAX_SEED} (the seeds prune takes), not ${lineage.seed}`);
  if (lineage.method === 'odf2nna') {
    if (lineage.epsilon === null) problems.push('lineage.epsilon: is null, but an odf2nna model is pruned at an ε: give it');
  } else if (lineage.method === 'general' && lineage.epsilon !== null) {
    problems.push(`lineage.epsilon: is ${lineage.epsilon}, but a general model is not pruned (method odf2nna is)`);
  }
  return problems;
}
