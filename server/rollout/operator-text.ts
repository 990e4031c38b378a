import { z } from 'zod';

/**
 * Text an operator gives a rollout (an abort or rollback reason) ends up in one-line outputs: the
 * decision log shown by `rollout status` and `watch`, the audit log, server logs. A newline
 * there forges a line of its own, an escape sequence recolours or rewrites the operator's
 * terminal. Such text is refused at the API (tab aside), and anything shown is escaped
 * (see printable), which covers reasons stored before the refusal and text from devices.
 */

/** C0 controls but tab, DEL, and C1 controls (U+009B is a one-character CSI on some terminals). */
const REFUSED = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/u;

/** The first refused character of `text` as `U+001B at character 5`, or null. */
export function controlCharacterIn(text: string): string | null {
  const match = REFUSED.exec(text);
  if (!match) return null;
  return `U+${match[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} at character ${[...text.slice(0, match.index)].length + 1}`;
}

/** An abort or rollback reason: at most 500 characters (at least `min`), no control characters but tab. */
export function reasonSchema(min = 0, max = 500) {
  return z
    .string()
    .min(min, `must be at least ${min} character${min === 1 ? '' : 's'}`)
    .max(max, `must be at most ${max} characters`)
    .superRefine((text, ctx) => {
      const found = controlCharacterIn(text);
      if (found) ctx.addIssue({ code: 'custom', message: `must not contain control characters such as newlines or escape sequences (found ${found})` });
    });
}

/** One line of user text that cannot rearrange what surrounds it (shared with the dashboard's bundle). */
export { printable } from '../../shared/util/printable.ts';
