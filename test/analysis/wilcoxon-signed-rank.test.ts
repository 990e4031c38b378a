import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { wilcoxonSignedRank } from '../../server/analysis/wilcoxon-signed-rank.ts';

/** Reference values from scipy 1.17.1 `scipy.stats.wilcoxon(d, alternative=...)` with its defaults. */
describe('Wilcoxon signed-rank test', () => {
  it('gives scipy\'s exact p-values for small samples without ties', () => {
    const mixed = wilcoxonSignedRank([1.5, -0.2, 2.1, 0.7, -1.1, 3.2, 0.4, 1.9], { alternative: 'greater' });
    assert.deepEqual([mixed.w, mixed.method], [31, 'exact']);
    assert.ok(Math.abs(mixed.p - 0.0390625) < 1e-12, String(mixed.p));
    const allWorse = wilcoxonSignedRank([-4.5, -4.4, -4.3, -4.2, -4.1, -4.0, -3.9, -3.8, -3.7, -3.6], { alternative: 'less' });
    assert.equal(allWorse.w, 0);
    assert.ok(Math.abs(allWorse.p - 1 / 1024) < 1e-15);
    assert.ok(Math.abs(wilcoxonSignedRank([-1, -2, -3, -4]).p - 2 / 16) < 1e-15, 'two-sided doubles the smaller tail');
  });

  it('drops zero differences and, with ties, enumerates the signs of the midranks (scipy\'s permutation p)', () => {
    const tied = wilcoxonSignedRank([3, -3, 1, 0, 1, -3, 3, -3], { alternative: 'less' });
    assert.deepEqual([tied.w, tied.n, tied.zeros, tied.ties, tied.method], [13, 7, 1, true, 'exact']);
    assert.equal(tied.p, 0.5);
    assert.deepEqual(wilcoxonSignedRank([0, 0, 0]), { w: 0, z: 0, p: 1, method: 'exact', n: 0, zeros: 3, ties: false });
  });

  it('uses the normal approximation with tie correction beyond 50 differences, as scipy', () => {
    const d = Array.from({ length: 60 }, (_, i) => 0.1 * i - 2);
    const result = wilcoxonSignedRank(d, { alternative: 'two-sided' });
    assert.equal(result.method, 'asymptotic');
    assert.ok(Math.abs(result.p - 0.00027454789964567) < 1e-8, String(result.p));
    assert.ok(Math.abs(wilcoxonSignedRank(d, { alternative: 'less' }).p - 0.9998627260501771) < 1e-8);
  });

  it('refuses non-finite differences', () => {
    assert.throws(() => wilcoxonSignedRank([1, Number.NaN]), /finite values, got NaN/);
  });
});
