import { canonicalText } from '../../shared/util/canonical-text.ts';
import { zodIssueMessage } from '../../shared/util/errors.ts';
import { AgentConfigSchema, MAX_LABEL_VALUE_CHARS } from '../../shared/protocol/agent-config.ts';
import { controlCharacterIn } from '../rollout/operator-text.ts';

/** The most labels a device can be enrolled with (keys are 1-64 characters, values at most MAX_LABEL_VALUE_CHARS). */
export const MAX_DEVICE_LABELS = 64;

/**
 * A device's labels at enrollment: the agent config's label syntax (which the rollout selectors
 * share), and at most MAX_DEVICE_LABELS of them, so one device cannot make every read of the
 * fleet (device lists, rollout targets, each report's cohort) carry an unbounded map.
 */
export const DeviceLabelsSchema = AgentConfigSchema.shape.labels
  .refine((labels) => Object.keys(labels).length <= MAX_DEVICE_LABELS, {
    error: (issue) => `at most ${MAX_DEVICE_LABELS} labels per device (got ${Object.keys(issue.input as object).length}); keys are 1-64 characters, values at most ${MAX_LABEL_VALUE_CHARS}`,
  })
  // Values are shown in one-line tables (devices list), the dashboard and rollout decision logs:
  // a newline there forges a row, an escape sequence rewrites the operator's terminal.
  .superRefine((labels, ctx) => {
    for (const [key, value] of Object.entries(labels)) {
      const found = controlCharacterIn(value);
      if (found) ctx.addIssue({ code: 'custom', path: [key], message: `must not contain control characters such as newlines or escape sequences (found ${found})` });
      // What a decoder puts where bytes were not UTF-8 (a Latin-1 "ü" in a shell argument): the
      // letter is lost already, and the label would read "Z\uFFFDrich" for good.
      else if (value.includes('\uFFFD')) {
        ctx.addIssue({ code: 'custom', path: [key], message: `holds U+FFFD, the replacement character: the text given was not UTF-8 (a Latin-1 terminal or file?); give it as UTF-8` });
      }
      // The CLI's --labels and --selector trim what they are given: a value padded with spaces
      // could never be selected from it, and reads as another in every table.
      else if (value !== value.trim()) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'must not begin or end with spaces (a selector given on the command line could never name it)' });
      }
    }
  });

/** The one-line problem with `labels`, or null when they may be enrolled. */
export function deviceLabelsProblem(labels: Record<string, string>): string | null {
  const parsed = DeviceLabelsSchema.safeParse(labels);
  return parsed.success ? null : parsed.error.issues.map((issue) => `labels${issue.path.map((key) => `.${String(key)}`).join('')}: ${zodIssueMessage(issue)}`).join('; ');
}

/** `labels` with each value in canonical form (canonicalText): one spelling of "Zürich" stored and shown. */
export function canonicalLabels(labels: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).map(([key, value]) => [key, canonicalText(value)]));
}
