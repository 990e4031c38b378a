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
