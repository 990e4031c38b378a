import { basename } from 'node:path';
import { UserError } from '../../shared/util/errors.ts';

/**
 * The layout of a pruning run's output directory: the pruned artifact at its root, next to
 * report.json, and the general model's artifact under general/ (unless it was registered before).
 * Its own module so that readers of the layout (the job service) do not load the training code.
 */
export { GENERAL_SUBDIR, REPORT_FILE } from '../../shared/artifact/prune-output-names.ts';

/** Where a run stages the general model's artifact, beside `outDir`, before it moves in as general/. */
export function generalStagingPath(outDir: string): string {
  return `${outDir}.general-${process.pid}-${Date.now()}`;
}

/**
 * Whether `name` (in the output directory's parent) is a directory a run stages beside `outDir`:
 * the pruned artifact's `<out>.tmp-<12 hex>` (writeArtifact) or the general model's
 * `<out>.general-<pid>-<ms>` and its `.tmp-<12 hex>` (generalStagingPath).
 */
export function isStagingSibling(outDir: string, name: string): boolean {
  const base = basename(outDir);
  if (!name.startsWith(`${base}.`)) return false;
  return /^(?:tmp-[0-9a-f]{12}|general-\d+-\d+(?:\.tmp-[0-9a-f]{12})?)$/.test(name.slice(base.length + 1));
}

/**
 * The longest name a run gives a sibling of its output directory: the general model's staging
 * directory (generalStagingPath, for the largest pid Linux hands out), itself staged by
 * writeArtifact as `<dir>.tmp-<12 hex digits>`.
 */
const LONGEST_SIBLING_SUFFIX_BYTES = '.general-4194304-0000000000000.tmp-000000000000'.length;

/** The most bytes one name may have on the common file systems (NAME_MAX: ext4, xfs, btrfs, tmpfs, APFS). */
const NAME_MAX_BYTES = 255;

/**
 * A UserError, before any training, when the output directory's name leaves no room for the
 * siblings the run stages beside it: it failed with ENAMETOOLONG only once the models were trained,
 * naming a staging directory the user never asked for.
 */
export function assertOutputNameFits(outDir: string, flag: string): void {
  const name = basename(outDir);
  const room = NAME_MAX_BYTES - LONGEST_SIBLING_SUFFIX_BYTES;
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > room) {
    const shown = name.length > 40 ? `${name.slice(0, 40)}…` : name;
    throw new UserError(`${flag}: the name ${JSON.stringify(shown)} is ${bytes} bytes long; at most ${room} leave room for the directories staged beside it`);
  }
}
