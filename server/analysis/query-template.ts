/** `{{args.NAME}}` placeholders in provider queries (as in Argo Rollouts' AnalysisTemplate). */
export const ARG_REFERENCE = /\{\{\s*args\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** Replaces `{{args.NAME}}` in a query; unknown names were rejected at spec validation and stay as written. */
export function renderQuery(template: string, args: Readonly<Record<string, string>>): string {
  return template.replace(ARG_REFERENCE, (whole, name: string) => args[name] ?? whole);
}

/** A PromQL string literal's content: backslashes and double quotes escaped. */
export function promqlString(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
}

/** A regex matching exactly these values (for `label=~"..."`), metacharacters escaped. */
export function promqlAlternation(values: readonly string[]): string {
  return values.map((value) => value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
}
