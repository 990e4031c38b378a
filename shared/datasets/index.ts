import { fileURLToPath } from 'node:url';

/** The small public data sets shipped with fleetprune (see README.md beside this file). */
export const SHIPPED_DATASETS = {
  iris: { file: 'iris.csv', label: 'species' },
  wine: { file: 'wine.csv', label: 'cultivar' },
  breast_cancer: { file: 'breast_cancer.csv', label: 'diagnosis' },
  diabetes: { file: 'diabetes.csv', label: 'progression' },
} as const;

export type ShippedDatasetName = keyof typeof SHIPPED_DATASETS;

export function shippedDatasetPath(name: ShippedDatasetName): string {
  return fileURLToPath(new URL(SHIPPED_DATASETS[name].file, import.meta.url));
}
