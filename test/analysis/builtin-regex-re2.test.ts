import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { RE2JS } from 're2js';
import { compileAnchored, literalAlternatives } from '../../server/metricproviders/builtin/linear-regex.ts';
import { labelMatches, parsePromql, type LabelMatcher, type PromExpr } from '../../server/metricproviders/builtin/promql-parser.ts';

// docs/rollout-spec.md, "The builtin provider's PromQL": regex matchers are RE2, as in Prometheus
// (Perl syntax, `.` matching a newline too, fully anchored), matched by re2js, a JavaScript port of
// RE2. Each pattern either matches exactly what RE2 matches or is refused as RE2 refuses it, with its
// message, never matched differently (with `!~`, a pattern that silently matches nothing selects
// everything).

/** The device matcher of `up{device=~"…"}`, the pattern written as in PromQL (backslashes doubled). */
function matcher(pattern: string, operator: '=~' | '!~' = '=~'): LabelMatcher {
  const expr = parsePromql(`up{device${operator}"${pattern.replaceAll('\\', '\\\\')}"}`) as Extract<PromExpr, { type: 'selector' }>;
  return expr.matchers.find((entry) => entry.label === 'device')!;
}

function check(pattern: string, matching: readonly string[], notMatching: readonly string[]): void {
  const m = matcher(pattern);
  for (const value of matching) assert.equal(labelMatches(m, value), true, `${pattern} should match ${JSON.stringify(value)}`);
  for (const value of notMatching) assert.equal(labelMatches(m, value), false, `${pattern} should not match ${JSON.stringify(value)}`);
  const negated = matcher(pattern, '!~');
  for (const value of notMatching) assert.equal(labelMatches(negated, value), true, `!~ ${pattern} should select ${JSON.stringify(value)}`);
  for (const value of matching) assert.equal(labelMatches(negated, value), false, `!~ ${pattern} should not select ${JSON.stringify(value)}`);
}

test('a leading (?i) makes the pattern case-insensitive, folding as RE2 does (k with the Kelvin sign, s with ſ)', () => {
  check('(?i)EDGE-.*', ['edge-1', 'EDGE-2', 'Edge-'], ['edgy-1', 'x-edge-1']);
  check('(?i)[a-z]+', ['ABC', 'abc', '\u212a', '\u017f'], ['a1', '']);
  check('(?i)[^a-z]', ['1', '-'], ['A', 'q', '\u212a']);
  check('(?is)a.b', ['A\nB'], ['ab']);
});

test('POSIX classes read as RE2 reads them, negated too', () => {
  check('edge-[[:digit:]]+', ['edge-1', 'edge-42'], ['edge-', 'edge-x', 'edge-:']);
  check('[[:alpha:]]+', ['abcXYZ'], ['abc1']);
  check('[[:alnum:]_-]+', ['edge_1-a'], ['edge.1']);
  check('[[:space:]]', [' ', '\t', '\n', '\v', '\f', '\r'], ['a', '\u00a0']);
  check('[[:upper:]][[:lower:]]+', ['Edge'], ['edge', 'EDGE']);
  check('[[:punct:]]+', ['!-/:@[`{~_'], ['a', ' ']);
  check('[[:xdigit:]]+', ['09afAF'], ['g']);
  check('[[:^digit:]]+', ['edge'], ['edge1']);
});

test('Unicode classes \\pN, \\p{L}, \\PL, \\p{^L} and scripts', () => {
  check('edge-\\pN+', ['edge-1', 'edge-\u0663', 'edge-\u2160'], ['edge-', 'edge-x']);
  check('\\p{L}+', ['héllo', 'Δ', '名前'], ['a1', '😀']);
  check('\\PL', ['1', '-'], ['a', 'é']);
  check('\\p{^L}', ['1'], ['a']);
  check('\\p{Greek}+', ['αβγ'], ['abc']);
  check('\\p{Nd}+', ['123\u0663'], ['\u2160']);
});

test('RE2 meanings JavaScript reads differently: code points, `.` and newlines, \\s, `]` first in a class, escapes', () => {
  check('.', ['a', '\n', '\r', '\u2028', '😀'], ['', 'ab']);
  check('[^a]', ['😀', 'b'], ['a', '😀😀']);
  check('(?-s).', ['a'], ['\n']);
  check('\\s', [' ', '\t', '\n', '\f', '\r'], ['\v', '\u00a0', '\u2028']);
  check('[]a]+', [']a', ']', 'a'], ['b']);
  check('[^]a]', ['b'], [']', 'a']);
  check('\\a\\x41\\x{1F600}\\012', ['\u0007A😀\n'], ['aA😀\n']);
  check('\\Qa.b*\\E', ['a.b*'], ['axb', 'a.bbb']);
  check('\\Aedge\\z', ['edge'], ['edge\n']);
  check('edge-\\d{2,3}', ['edge-12', 'edge-123'], ['edge-1', 'edge-1234']);
  check('a{,2}', ['a{,2}'], ['a', 'aa']);
  check('(?P<site>lab|hall)-\\w+', ['lab-1', 'hall-x'], ['lab-', 'attic-1']);
});

test('flags anywhere in the pattern, scoped flag groups, case folding beyond ASCII and (?m), as RE2 reads them', () => {
  check('edge(?i)-x', ['edge-x', 'edge-X'], ['EDGE-x', 'Edge-X']);
  check('(?i:edge)-x', ['EDGE-x', 'edge-x', 'eDgE-x'], ['edge-X', 'EDGE-X']);
  check('(?i)é', ['é', 'É'], ['e', 'E']);
  check('(?i)\\p{Lu}', ['a', 'A', 'é', 'É'], ['1', '-']);
  check('(?m)^edge$', ['edge'], ['edge\n', '\nedge', 'x\nedge']);
  check('(?m)edge$.^x', ['edge\nx'], ['edgeyx', 'edgex']);
  check('edge$.^x', [], ['edge\nx', 'edgeyx']);
});

test('what RE2 refuses is refused, with re2js\'s message naming the construct', () => {
  for (const [pattern, message] of [
    ['\\C', /error parsing regexp: invalid escape sequence: `\\C`/],
    ['\\e', /error parsing regexp: invalid escape sequence: `\\e`/],
    ['[[:digits:]]', /error parsing regexp: invalid character class range: `\[:digits:\]`/],
    ['\\p{Nope}', /error parsing regexp: invalid character class range: `\\p\{Nope\}`/],
    ['[\\b]', /error parsing regexp: invalid escape sequence: `\\b`/],
    ['a{1001}', /error parsing regexp: invalid repeat count: `\{1001\}`/],
    ['a**', /error parsing regexp: invalid nested repetition operator: `\*\*`/],
    ['(a)\\1', /error parsing regexp: invalid escape sequence: `\\1`/],
    ['(?=a)a', /error parsing regexp: invalid or unsupported Perl syntax: `\(\?=`/],
    ['(?<!a)a', /error parsing regexp: invalid named capture: `\(\?<!a\)a`/],
    ['(a', /error parsing regexp: missing closing \): `\(a` \(at character \d+\)$/],
    ['a)|(b', /error parsing regexp: unexpected \): `a\)\|\(b` \(at character \d+\)$/],
  ] as const) {
    assert.throws(() => matcher(pattern), { message: new RegExp(`^bad regular expression .* for device: ${message.source}`) }, pattern);
  }
});

describe('literal alternatives (a cohort) are matched as a set, exactly as RE2 would', () => {
  it('agrees with re2js on every pattern and value', () => {
    const patterns = ['d1|d2', 'dev\\.1|dev-2', 'a|', '|', '', 'x\\|y', 'a\\\\b', 'dev 1|dev\\ 2', 'h\u00e9|日本', 'a\\-b|c\\_d'];
    const values = ['d1', 'd2', 'd3', 'dev.1', 'devx1', 'dev-2', 'a', '', 'x|y', 'x', 'a\\b', 'dev 1', 'dev 2', 'hé', '日本', 'a-b', 'c_d', 'd1\n'];
    for (const pattern of patterns) {
      assert.notEqual(literalAlternatives(pattern), null, `${pattern} is literal alternatives`);
      const re2 = RE2JS.compile(pattern, RE2JS.DOTALL);
      const compiled = compileAnchored(pattern);
      for (const value of values) assert.equal(compiled.matches(value), re2.matches(value), `${JSON.stringify(pattern)} on ${JSON.stringify(value)}`);
    }
    for (const pattern of ['d.|x', '(d1|d2)', 'd1+', '\\d', 'a[b]', '^a$', 'a{2}', '\\pN']) assert.equal(literalAlternatives(pattern), null, `${pattern} goes to re2js`);
  });

  it('takes a cohort of 20,000 devices (where re2js would compile for seconds)', () => {
    const ids = Array.from({ length: 20_000 }, (_, i) => `dev.${i}`);
    const cohort = compileAnchored(ids.map((id) => id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'));
    assert.equal(cohort.matches('dev.19999'), true);
    assert.equal(cohort.matches('devx19999'), false);
  });
});
