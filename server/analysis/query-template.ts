/** `{{args.NAME}}` placeholders in provider queries (as in Argo Rollouts' AnalysisTemplate). */
export const ARG_REFERENCE = /\{\{\s*args\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** Replaces `{{args.NAME}}` in a query; unknown names were rejected at spec validation and stay as written. */
export function renderQuery(template: string, args: Readonly<Record<string, string>>): string {
  return template.replace(ARG_REFERENCE, (whole, name: string) => args[name] ?? whole);
}

/**
 * The first stray `{{` or `}}` left once the well-formed placeholders are taken out (`{{args.model}`,
 * `{{args.model}}}`, `{{ model }}`), with a little context; null when there is none. PromQL itself
 * never doubles braces, and such a placeholder inside a quoted label value would otherwise be sent
 * as written and match nothing.
 */
export function strayPlaceholder(template: string): string | null {
  const rest = template.replace(ARG_REFERENCE, '');
  const at = rest.search(/\{\{|\}\}/);
  return at < 0 ? null : rest.slice(Math.max(0, at - 10), at + 20);
}

/** A PromQL string literal's content: backslashes and double quotes escaped. */
export function promqlString(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
}

/** A regex matching exactly these values (for `label=~"..."`), metacharacters escaped. */
export function promqlAlternation(values: readonly string[]): string {
  return values.map((value) => value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
}
