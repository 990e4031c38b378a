import { z } from 'zod';
import { LabelKeySchema, MAX_LABEL_VALUE_CHARS } from '../../shared/protocol/agent-config.ts';
import { sameText } from '../../shared/util/canonical-text.ts';

/**
 * Kubernetes-style label selectors over device labels: every `matchLabels` pair and every
 * `matchExpressions` requirement must hold. An empty selector matches every device.
 */
export const LABEL_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

// Exactly the labels a device can be enrolled with: a selector can name every one of them.
const LabelKey = LabelKeySchema;
const LabelValue = z.string().max(MAX_LABEL_VALUE_CHARS, `must be at most ${MAX_LABEL_VALUE_CHARS} characters`);

export const LabelRequirementSchema = z
  .strictObject({
    key: LabelKey,
    operator: z.enum(LABEL_OPERATORS),
    values: z.array(LabelValue).optional(),
  })
  .superRefine((requirement, ctx) => {
    const needsValues = requirement.operator === 'In' || requirement.operator === 'NotIn';
    if (needsValues && (!requirement.values || requirement.values.length === 0)) {
      ctx.addIssue({ code: 'custom', path: ['values'], message: `operator ${requirement.operator} needs at least one value` });
    }
    if (!needsValues && requirement.values !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['values'], message: `operator ${requirement.operator} takes no values` });
    }
  });

export const LabelSelectorSchema = z.strictObject({
  matchLabels: z.record(LabelKey, LabelValue).optional(),
  matchExpressions: z.array(LabelRequirementSchema).optional(),
});
export type LabelSelector = z.infer<typeof LabelSelectorSchema>;

/** True for `{}` and for a selector whose lists are both empty: it matches every device. */
export function isEmptySelector(selector: LabelSelector): boolean {
  return Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0;
}

/** Values are compared as text (sameText): `site=Zürich` matches a device enrolled with it decomposed. */
export function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(labels, key) || !sameText(labels[key]!, value)) return false;
  }
  for (const requirement of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, requirement.key);
    const value = labels[requirement.key];
    switch (requirement.operator) {
      case 'In':
        if (!has || !requirement.values!.some((wanted) => sameText(value!, wanted))) return false;
        break;
      case 'NotIn':
        if (has && requirement.values!.some((unwanted) => sameText(value!, unwanted))) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** `site=north,tier in (edge),!legacy` — for logs and the CLI. */
export function describeSelector(selector: LabelSelector): string {
  const parts = Object.entries(selector.matchLabels ?? {}).map(([key, value]) => `${key}=${value}`);
  for (const requirement of selector.matchExpressions ?? []) {
    switch (requirement.operator) {
      case 'In': parts.push(`${requirement.key} in (${requirement.values!.join(',')})`); break;
      case 'NotIn': parts.push(`${requirement.key} notin (${requirement.values!.join(',')})`); break;
      case 'Exists': parts.push(requirement.key); break;
      case 'DoesNotExist': parts.push(`!${requirement.key}`); break;
    }
  }
  return parts.length === 0 ? '(every device)' : parts.join(',');
}
