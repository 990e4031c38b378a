/**
 * What `fleetprune prune` writes beside the pruned artifact in its --out: the general model's
 * artifact (the pruned one's parent) under general/, and report.json. One definition for the
 * writer (server/pruning), the --out check, `verify` and `models push`.
 */
export const GENERAL_SUBDIR = 'general';
export const REPORT_FILE = 'report.json';
