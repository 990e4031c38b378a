import { z } from 'zod';

/**
 * Text an operator gives a rollout (an abort or rollback reason) ends up in one-line outputs: the
 * decision log shown by `rollout status` and `watch`, the audit log, server logs. A newline
 * there forges a line of its own, an escape sequence recolours or rewrites the operator's
 * terminal. Such text is refused at the API (tab aside), and anything shown is escaped
 * (see printable), which covers reasons stored before the refusal and text from devices.
 */

/**
 * C0 controls but tab, DEL, and C1 controls (U+009B is a one-character CSI on some terminals);
 * the line and paragraph separators, which end a line in some viewers; and the bidirectional
 * embeddings, overrides and isolates, which make text read in another order than it is stored
 * ("Trojan Source"). The LRM, RLM and ALM marks, which right-to-left text uses, are kept.
 */
const REFUSED = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/** The first refused character of `text` as `U+001B at character 5`, or null. */
export function controlCharacterIn(text: string): string | null {
  const match = REFUSED.exec(text);
  if (!match) return null;
  return `U+${match[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} at character ${[...text.slice(0, match.index)].length + 1}`;
}

/** An abort or rollback reason: at most 500 characters (at least `min`), no control characters but tab, not blank. */
export function reasonSchema(min = 0, max = 500) {
  return z
    .string()
    .min(min, `must be at least ${min} character${min === 1 ? '' : 's'}`)
    .max(max, `must be at most ${max} characters`)
    .superRefine((text, ctx) => {
      const found = controlCharacterIn(text);
      if (found) ctx.addIssue({ code: 'custom', message: `must not contain control characters such as newlines or escape sequences (found ${found})` });
      // Shown as nothing at all (a token "labelled" three spaces, a reason that says nothing).
      else if (text !== '' && text.trim() === '') ctx.addIssue({ code: 'custom', message: 'must not be blank (leave it out instead)' });
    });
}

/** One line of user text that cannot rearrange what surrounds it (shared with the dashboard's bundle). */
export { printable } from '../../shared/util/printable.ts';
