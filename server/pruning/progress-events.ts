/** The phases of an ODF2NNA run, in order, and its progress events (for progress bars and job streams). */
export type Phase = 'train' | 'measure' | 'rebuild' | 'retrain' | 'baselines' | 'export';
export const PHASES: readonly Phase[] = ['train', 'measure', 'rebuild', 'retrain', 'baselines', 'export'];

export interface ProgressEvent {
  phase: Phase;
  done: number;
  total: number;
  detail?: string;
}
