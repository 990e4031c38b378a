/**
 * Text as compared: Unicode normalization form C. "Zürich" typed on one machine and saved
 * decomposed on another (u followed by U+0308, as macOS file names and some editors write it)
 * look the same everywhere they are shown, and are one name, one label value, one class.
 */
export function canonicalText(text: string): string {
  return text.normalize('NFC');
}

/** Whether `a` and `b` are the same text (canonicalText), with no work when they are the same code units. */
export function sameText(a: string, b: string): boolean {
  return a === b || canonicalText(a) === canonicalText(b);
}

/** A column's name as names are compared (a feature, a label column): canonicalText without spaces around it (quoted " d " is d). */
export function columnKey(name: string): string {
  return canonicalText(name.trim());
}
