/**
 * The layout of a pruning run's output directory: the pruned artifact at its root, next to
 * report.json, and the general model's artifact under general/ (unless it was registered before).
 * Its own module so that readers of the layout (the job service) do not load the training code.
 */
export const GENERAL_SUBDIR = 'general';
export const REPORT_FILE = 'report.json';
