import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clipLabel } from '../../server/cli/tokens-command.ts';

test('tokens list cuts a long label in its table (200 characters would widen every row), whole emoji, with an ellipsis; a short one stays whole', () => {
  assert.equal(clipLabel('ci deploy bot'), 'ci deploy bot');
  assert.equal(clipLabel('x'.repeat(40)), 'x'.repeat(40));
  assert.equal(clipLabel('x'.repeat(200)), `${'x'.repeat(39)}…`);
  assert.equal(clipLabel('🦄'.repeat(200)), `${'🦄'.repeat(39)}…`, 'no emoji is cut in half');
  // Flags, joined sequences and combining accents are one character each, and are never split.
  for (const char of ['🇯🇵', '👩‍💻', 'e\u0301']) assert.equal(clipLabel(char.repeat(100)), `${char.repeat(39)}…`, JSON.stringify(char));
});
