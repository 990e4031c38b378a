import stringWidth from 'string-width';
import { printable } from '../rollout/operator-text.ts';

/**
 * Rows as aligned columns separated by two spaces; the first row is the header. Cells are escaped
 * to one line (printable): a label or name holding a newline would forge a row, and escape
 * sequences would reach the terminal. Columns align by the columns a terminal gives each cell
 * (string-width), not by its UTF-16 length: a label such as site=大阪 or one holding an emoji takes
 * two columns a character, an accent written as a combining mark none.
 */
export function formatTable(rows: string[][]): string {
  const cells = rows.map((row) => row.map(printable));
  const widths = cells[0]!.map((_, column) => cells.reduce((width, row) => Math.max(width, stringWidth(row[column]!)), 0));
  const padded = (cell: string, width: number) => cell + ' '.repeat(Math.max(0, width - stringWidth(cell)));
  return cells.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : padded(cell, widths[column]!))).join('  ')).join('\n') + '\n';
}
