import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatTable } from '../../server/cli/format-table.ts';

test('CLI tables: columns aligned on the widest cell; a cell holding a newline or an escape sequence is shown escaped, one row a line', () => {
  const table = formatTable([
    ['ID', 'LABEL', 'BY'],
    ['tok-1', 'ci runner', 'admin'],
    ['tok-2', 'x\nforged  row\u001b[2J\u202e', 'admin'],
  ]);
  assert.equal(
    table,
    'ID     LABEL                        BY\n' +
      'tok-1  ci runner                    admin\n' +
      'tok-2  x\\nforged  row\\x1b[2J\\u202e  admin\n',
  );
});

test('CLI tables align by terminal columns: wide (CJK, emoji) characters take two, combining marks none', () => {
  const table = formatTable([
    ['DEVICE', 'LABELS', 'STATUS'],
    ['osaka-1', 'site=大阪', 'online'],
    ['lyon-1', 'site=Lyon 🚀', 'online'],
    ['cafe-1', 'site=cafe\u0301', 'offline'],
  ]);
  assert.equal(
    table,
    'DEVICE   LABELS        STATUS\n' +
      'osaka-1  site=大阪     online\n' +
      'lyon-1   site=Lyon 🚀  online\n' +
      'cafe-1   site=cafe\u0301     offline\n',
  );
});
