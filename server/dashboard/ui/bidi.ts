import { esc } from './html.ts';

const ISOLATE_INITIATORS = new Set(['\u2066', '\u2067', '\u2068']); // LRI, RLI, FSI
const PDI = '\u2069';

/**
 * The text with its isolates balanced: a pop (PDI) with nothing of its own to close is dropped,
 * and isolates left open are closed. Text isolated for display (below) then cannot end the
 * isolate around it early, nor keep it open over what follows; an unclosed override (U+202E) or
 * embedding ends with the isolate anyway.
 */
export function balanceIsolates(text: string): string {
  let open = 0;
  let out = '';
  for (const c of text) {
    if (ISOLATE_INITIATORS.has(c)) open++;
    else if (c === PDI) {
      if (open === 0) continue;
      open--;
    }
    out += c;
  }
  return out + PDI.repeat(open);
}

/**
 * User-provided text (labels, reasons, messages, actors) as escaped HTML in its own bidi isolate:
 * a right-to-left override or other bidi control in it cannot reorder the text and badges beside it.
 */
export function userText(value: unknown): string {
  return `<bdi>${esc(balanceIsolates(String(value ?? '')))}</bdi>`;
}

/** The same as an element, for views built with DOM nodes (textContent). */
export function bdiElement(value: unknown): HTMLElement {
  const element = document.createElement('bdi');
  element.textContent = balanceIsolates(String(value ?? ''));
  return element;
}
