import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Puts a directory (with a file in it) where the agent's `state.json` goes, so that no state write
 * can replace it: like a full disk. Returns what the file held (undefined when there was none).
 * A write of the agent's own between the removal and the directory (a heartbeat moving reports to
 * the outbox) is read and removed again, so the block always lands.
 */
export async function blockStateFile(stateFile: string): Promise<Buffer | undefined> {
  for (let attempt = 1; ; attempt++) {
    const saved = await readFile(stateFile).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    await rm(stateFile, { force: true });
    try {
      await mkdir(join(stateFile, 'blocker'), { recursive: true });
      return saved;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTDIR' && code !== 'EEXIST') || attempt >= 50) throw error;
    }
  }
}

/** Takes the block away and puts `saved` back as `state.json`. */
export async function restoreStateFile(stateFile: string, saved: Buffer): Promise<void> {
  await rm(stateFile, { recursive: true });
  await writeFile(stateFile, saved);
}
