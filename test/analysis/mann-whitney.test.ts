import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { erfc, mannWhitneyU, median } from '../../server/analysis/mann-whitney.ts';

/**
 * Expected values are scipy.stats.mannwhitneyu 1.17 (use_continuity=True unless stated), and
 * hand-derivable exact ones: for x = [1,2,3], y = [4,5,6] every one of the C(6,3) = 20
 * arrangements is equally likely and only one has U = 0, so P(U ≤ 0) = 1/20.
 */
const close = (actual: number, expected: number, tolerance = 1e-8) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} is not within ${tolerance} of ${expected}`);

describe('Mann-Whitney U', () => {
  const x = [19, 22, 16, 29, 24];
  const y = [20, 11, 17, 12];

  it('computes U of the first sample', () => {
    assert.equal(mannWhitneyU(x, y).u, 17);
    assert.equal(mannWhitneyU(y, x).u, 3);
  });

  it('matches scipy asymptotic p-values without ties', () => {
    close(mannWhitneyU(x, y, { method: 'asymptotic' }).p, 0.11134688653314041);
    close(mannWhitneyU(x, y, { method: 'asymptotic', alternative: 'less' }).p, 0.9669037101389033);
    close(mannWhitneyU(x, y, { method: 'asymptotic', alternative: 'greater' }).p, 0.055673443266570206);
    close(mannWhitneyU(x, y, { method: 'asymptotic' }).z, 1.7146428199482247, 1e-12);
  });

  it('matches scipy exact p-values (and picks exact by default for small samples without ties)', () => {
    close(mannWhitneyU(x, y, { method: 'exact' }).p, 0.1111111111111111, 1e-12);
    close(mannWhitneyU(x, y, { method: 'exact', alternative: 'less' }).p, 0.9682539682539683, 1e-12);
    close(mannWhitneyU(x, y, { alternative: 'greater' }).p, 0.05555555555555555, 1e-12);
    assert.equal(mannWhitneyU(x, y).method, 'exact');
    const separated = mannWhitneyU([1, 2, 3], [4, 5, 6], { alternative: 'less' });
    assert.equal(separated.u, 0);
    close(separated.p, 1 / 20, 1e-12);
    close(mannWhitneyU([1, 2, 3], [4, 5, 6], { alternative: 'less', method: 'asymptotic' }).p, 0.04042779918502612);
  });

  it('goes exact by default up to 8 values in the smaller sample, as scipy (asymptotic from 9)', () => {
    const eight = mannWhitneyU([1.1, 2.3, 3.2, 4.8, 5.1, 6.7, 7.4, 8.9], [2.0, 3.9, 5.5, 6.1, 7.8, 8.2, 9.6, 10.4], { alternative: 'less' });
    assert.equal(eight.method, 'exact');
    assert.ok(Math.abs(eight.p - 0.11724941724941723) < 1e-12, String(eight.p));
    const nine = mannWhitneyU([0, 1, 2, 3, 4, 5, 6, 7, 8], [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5], { alternative: 'less' });
    assert.equal(nine.method, 'asymptotic');
    assert.ok(Math.abs(nine.p - 0.36196601980698784) < 1e-8, String(nine.p));
  });

  it('applies the tie correction like scipy', () => {
    const a = [1, 2, 2, 3, 3, 3, 4, 5];
    const b = [3, 4, 4, 5, 5, 6, 7, 7, 8];
    const twoSided = mannWhitneyU(a, b);
    assert.equal(twoSided.u, 7.5);
    assert.equal(twoSided.ties, true);
    assert.equal(twoSided.method, 'asymptotic');
    close(twoSided.p, 0.006373133838085873);
    close(mannWhitneyU(a, b, { alternative: 'less' }).p, 0.0031865669190429364);
    close(mannWhitneyU(a, b, { alternative: 'greater' }).p, 0.9976386658073535);
    close(mannWhitneyU(a, b, { continuityCorrection: false }).p, 0.0054921866892152955);
    assert.throws(() => mannWhitneyU(a, b, { method: 'exact' }), /needs samples without ties/);
  });

  it('uses the normal approximation for larger samples', () => {
    const big1 = Array.from({ length: 30 }, (_, i) => i * 0.5);
    const big2 = Array.from({ length: 25 }, (_, i) => i * 0.5 + 3);
    const result = mannWhitneyU(big1, big2);
    assert.equal(result.u, 288);
    close(result.p, 0.14353573809364073);
  });

  it('stays fast and bounded for a tiny sample against a large one', () => {
    const small = [1, 2, 3];
    const large = Array.from({ length: 5000 }, (_, i) => i * 0.001 + 0.5);
    const started = Date.now();
    const auto = mannWhitneyU(small, large, { alternative: 'greater' });
    assert.equal(auto.method, 'asymptotic', 'n1 × n2 above the exact limit');
    const exact = mannWhitneyU([10, 20, 30], Array.from({ length: 500 }, (_, i) => i * 0.01 + 0.001), { alternative: 'greater', method: 'exact' });
    assert.equal(exact.u, 1500);
    close(exact.p, 1 / ((503 * 502 * 501) / 6), 1e-15);
    assert.ok(Date.now() - started < 2000);
    assert.throws(() => mannWhitneyU(small, Array.from({ length: 400_000 }, (_, i) => i + 0.5), { method: 'exact' }), /limited to n1 × n2 ≤ 1600/);
  });

  it('bounds the exact method\'s cost: the largest exact shapes stay fast, larger ones go asymptotic (auto) or are refused (exact)', () => {
    const spread = (n: number, offset: number) => Array.from({ length: n }, (_, i) => i * 2 + offset);
    // The worst shapes within the limit (n1 × n2 ≤ 1600): square, and the smaller sample at auto's 8.
    for (const [a, b] of [[40, 40], [8, 200], [1, 1600]] as const) {
      const started = performance.now();
      const result = mannWhitneyU(spread(a, 0.5), spread(b, 1), { method: 'exact' });
      const elapsed = performance.now() - started;
      assert.equal(result.method, 'exact', `${a} × ${b}`);
      // A guard against the old cost (tens of seconds), not a timing: a few ms here, 526 ms once on a
      // loaded 2-core machine in a full npm test.
      assert.ok(elapsed < 3000, `${a} × ${b} exact took ${elapsed.toFixed(0)} ms (a few ms expected; seconds before the bound)`);
    }
    // 8 × 2500 went exact by default and took 37 s; 100 × 100 exact 4.8 s.
    const started = performance.now();
    const auto = mannWhitneyU(spread(8, 0.5), spread(2500, 1), { alternative: 'greater' });
    assert.equal(auto.method, 'asymptotic', 'auto goes asymptotic beyond n1 × n2 = 1600');
    assert.ok(performance.now() - started < 3000, `auto for 8 × 2500 took ${(performance.now() - started).toFixed(0)} ms`);
    assert.throws(() => mannWhitneyU(spread(100, 0.5), spread(100, 1), { method: 'exact' }), /limited to n1 × n2 ≤ 1600; use the asymptotic method/);
    assert.throws(() => mannWhitneyU(spread(41, 0.5), spread(40, 1), { method: 'exact' }), /limited to n1 × n2 ≤ 1600/);
    // A hand-derivable exact p: every one of the C(9, 4) = 126 arrangements is equally likely.
    close(mannWhitneyU([1, 2, 3, 4], [5, 6, 7, 8, 9], { method: 'exact', alternative: 'less' }).p, 1 / 126, 1e-15);
  });

  it('rejects empty or non-finite samples', () => {
    assert.throws(() => mannWhitneyU([], [1]), /two non-empty samples/);
    assert.throws(() => mannWhitneyU([Number.NaN], [1]), /finite values/);
  });

  it('erfc and median', () => {
    close(erfc(0.3), 0.6713732405408726, 1e-9);
    close(erfc(1), 0.15729920705028513, 1e-9);
    close(erfc(-1), 1.842700792949715, 1e-9);
    close(erfc(5), 1.5374597944280351e-12, 1e-15);
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, 3]), 2.5);
  });
});
