import { constants } from 'node:fs';
import { access, mkdir, readdir, rm } from 'node:fs/promises';
import { UserError } from '../shared/util/errors.ts';
import { basename, join } from 'node:path';

/**
 * Layout of the agent's data directory:
 *   state.json            slots (active, candidate, previous), the pending assignment; replaced atomically
 *   models/<artifactId>/  verified models: manifest.json + model.onnx (content-addressed, immutable)
 *   downloads/<sha>.part  partial model downloads, resumed with HTTP Range
 *   outbox/               reports not yet acknowledged by the broker
 */
export class DataDir {
  constructor(readonly root: string) {}
  get stateFile(): string {
    return join(this.root, 'state.json');
  }
  get modelsDir(): string {
    return join(this.root, 'models');
  }
  modelDir(artifactId: string): string {
    return join(this.modelsDir, artifactId);
  }
  get downloadsDir(): string {
    return join(this.root, 'downloads');
  }
  partFile(blobSha256: string): string {
    return join(this.downloadsDir, `${blobSha256}.part`);
  }
  get outboxDir(): string {
    return join(this.root, 'outbox');
  }

  /**
   * Creates the directories of the layout. Something else in their place (a file named `models`)
   * fails here, at start-up, naming it (EEXIST), rather than at the first download. Removing the
   * leftovers of a crash is best effort: with `onCleanupFailure`, one that cannot be removed (a
   * read-only disk) is passed to it and the rest goes on (a leftover is harmless; the agent must
   * still serve its model); without it, the failure is thrown.
   */
  async prepare(onCleanupFailure?: CleanupFailure): Promise<void> {
    for (const dir of [this.root, this.modelsDir, this.downloadsDir, this.outboxDir]) {
      await mkdir(dir, { recursive: true });
      // One this user may not write to (owned by another, mode 555) refused every assignment after
      // "agent ready": stopped here instead. A disk that takes no writes at all (EROFS) is not
      // stopped for: the agent must still serve its model.
      await access(dir, constants.W_OK | constants.X_OK).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EACCES' && error.code !== 'EPERM') return;
        throw new UserError(`cannot use the data dir ${this.root}: this user may not write to ${dir} (${error.code}); give the agent's user write access to the data dir (chown -R USER ${this.root})`, { cause: error });
      });
    }
    // Temp files of a state write that a crash interrupted (never renamed over state.json); a
    // directory by such a name (not the agent's) would otherwise stop every start.
    const stateTemp = `.${basename(this.stateFile)}.tmp-`;
    for (const name of await readdir(this.root)) if (name.startsWith(stateTemp)) await removeLeftover(join(this.root, name), onCleanupFailure);
  }
}

/** A leftover file or directory that could not be removed (the disk is read-only, say), and why. */
export type CleanupFailure = (path: string, error: unknown) => void;

/** Removes a leftover (recursively); a failure goes to `onFailure` when given, else is thrown. */
export async function removeLeftover(path: string, onFailure?: CleanupFailure): Promise<void> {
  try {
    await rm(path, { force: true, recursive: true });
  } catch (error) {
    if (!onFailure) throw error;
    onFailure(path, error);
  }
}
