import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLifetimeSeconds } from '../../shared/cli/option-parsers.ts';

test('--expires-in reads days, weeks and the usual units, summed, up to the next whole second; anything else is refused', () => {
  const cases: [string, number][] = [
    ['90d', 90 * 86_400],
    ['2w', 2 * 604_800],
    ['1d12h', 36 * 3600],
    [' 12h ', 12 * 3600],
    ['1.5d', 129_600],
    ['400ms', 1],
    ['0.5s', 1],
    ['1500ms', 2],
    ['0s', 0],
  ];
  for (const [text, seconds] of cases) assert.equal(parseLifetimeSeconds(text), seconds, text);
  for (const bad of ['5', '3 days', '90days', '1D', '-5d', '1e3s', '']) assert.throws(() => parseLifetimeSeconds(bad), /must be a duration such as 90d, 2w, 12h or 1d12h/, bad);
});
