import { printable } from '../rollout/operator-text.ts';

/**
 * Rows as aligned columns separated by two spaces; the first row is the header. Cells are escaped
 * to one line (printable): a label or name holding a newline would forge a row, and escape
 * sequences would reach the terminal.
 */
export function formatTable(rows: string[][]): string {
  const cells = rows.map((row) => row.map(printable));
  const widths = cells[0]!.map((_, column) => cells.reduce((width, row) => Math.max(width, row[column]!.length), 0));
  return cells.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n') + '\n';
}
