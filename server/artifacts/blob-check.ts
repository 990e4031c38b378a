import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { DevicesRepository } from '../store/repositories/devices-repository.ts';
import type { Store } from '../store/store.ts';
import type { BlobStore, OpenBlob } from './blob-store.ts';
import type { OnDamagedBlob } from './damaged-blob.ts';

/** POST /api/blobs/check and gRPC Blobs.CheckBlobs. */
export const BlobCheckRequestSchema = z.strictObject({
  dryRun: z.boolean().default(false).describe('report damaged copies, leave them where they are'),
});

export const BLOB_PROBLEM_KINDS = ['missing', 'damaged', 'unreadable'] as const;
export type BlobProblemKind = (typeof BLOB_PROBLEM_KINDS)[number];

/** A registered version that lists a blob: which of its files it is. */
export interface BlobUse {
  model: string;
  version: string;
  file: string;
  aliases: string[];
  retired: boolean;
}

/** How many live devices hold a version in each slot (`previous` is where a rollback goes). */
export interface SlotCounts {
  active: number;
  candidate: number;
  previous: number;
}

/** A file some registered version lists that the server cannot serve as it is. */
export interface BlobProblem {
  sha256: string;
  /** The size the manifests give. */
  bytes: number;
  /** `missing`: not stored; `damaged`: stored, but its bytes hash to something else (or it has another size); `unreadable`: the server could not read it (a disk or permission error). */
  problem: BlobProblemKind;
  /** What was found, in words, and what to do. */
  detail: string;
  /** Where a damaged copy was moved (null: a dry run, or not moved). */
  setAside: string | null;
  versions: BlobUse[];
  /** Live devices holding those versions, by slot: what a lost file puts at risk (a rollback to `previous` downloads it again when the device lost its copy). */
  devices: SlotCounts;
}

export interface BlobCheckResult {
  dryRun: boolean;
  /** Registered versions whose files were checked. */
  versions: number;
  /** Distinct files they list, each read whole and hashed once. */
  blobs: number;
  /** Bytes read. */
  bytes: number;
  /** Files stored whole and sound. */
  sound: number;
  /** Missing, damaged and unreadable files, in that order, each by sha256. */
  problems: BlobProblem[];
}

/** How far a check is: files and bytes done of those to do. */
export interface BlobCheckProgress {
  blobs: number;
  totalBlobs: number;
  bytes: number;
  totalBytes: number;
}

const VERSION_PAGE = 500;
const DEVICE_PAGE = 1000;

/**
 * Reads every file that a registered version lists, whole, and checks it against its sha256 and
 * size: a scrub of the artifact store, for after a restore from backup, a disk error or files
 * touched by hand, before a rollout or a rollback needs them. Downloads check each file they send
 * the same way, but only when a device asks for it; this finds the damage first.
 *
 * A damaged copy is handled as a download that finds one handles it (`onDamaged`: moved aside,
 * counted in fleetprune_blobs_damaged_total and logged), so the blob reads as not stored and the
 * next `models push` of an artifact listing it uploads it again; `dryRun` moves nothing. Each
 * problem names the versions that list the file and how many live devices hold them, and a run
 * that moved something is audited as `blobs.check`.
 */
export async function checkBlobs(
  deps: { store: Store; blobs: BlobStore; devices: DevicesRepository; onDamaged: OnDamagedBlob },
  options: { dryRun: boolean; actor: string; onProgress?: (progress: BlobCheckProgress) => void; signal?: AbortSignal },
): Promise<BlobCheckResult> {
  const { store, blobs } = deps;
  const { signal } = options;
  // The size of each file listed; which versions list it is looked up again for the few with problems.
  const listed = new Map<string, number>();
  let versions = 0;
  for await (const page of versionPages(store, signal)) {
    versions += page.length;
    for (const version of page) for (const { sha256, bytes } of Object.values(version.manifest.files)) listed.set(sha256, bytes);
  }
  const progress: BlobCheckProgress = { blobs: 0, totalBlobs: listed.size, bytes: 0, totalBytes: 0 };
  for (const bytes of listed.values()) progress.totalBytes += bytes;
  options.onProgress?.({ ...progress });

  const result: BlobCheckResult = { dryRun: options.dryRun, versions, blobs: listed.size, bytes: 0, sound: 0, problems: [] };
  const found = new Map<string, Omit<BlobProblem, 'versions' | 'devices'>>();
  for (const sha256 of [...listed.keys()].sort()) {
    signal?.throwIfAborted();
    const bytes = listed.get(sha256)!;
    const checked = await checkOne(blobs, sha256, bytes, options.dryRun ? undefined : deps.onDamaged, signal);
    result.bytes += checked.read;
    progress.blobs++;
    progress.bytes += bytes;
    options.onProgress?.({ ...progress });
    if (checked.problem) found.set(sha256, { sha256, bytes, ...checked.problem });
    else result.sound++;
  }
  if (found.size > 0) {
    const uses = new Map<string, BlobUse[]>();
    for await (const page of versionPages(store, signal)) {
      for (const version of page) {
        for (const [file, { sha256 }] of Object.entries(version.manifest.files)) {
          if (!found.has(sha256)) continue;
          uses.set(sha256, [...(uses.get(sha256) ?? []), { model: version.model, version: version.version, file, aliases: version.aliases, retired: version.retired }]);
        }
      }
    }
    const held = await slotCounts(deps.devices, signal);
    result.problems = [...found.values()]
      .map((problem) => {
        const versionsListing = uses.get(problem.sha256) ?? [];
        return { ...problem, versions: versionsListing, devices: sumSlots(versionsListing.map((use) => held.get(`${use.model}@${use.version}`))) };
      })
      .sort((a, b) => BLOB_PROBLEM_KINDS.indexOf(a.problem) - BLOB_PROBLEM_KINDS.indexOf(b.problem));
  }

  const moved = result.problems.filter((problem) => problem.setAside !== null);
  if (moved.length > 0) {
    await store.audit.append({
      at: new Date().toISOString(),
      actor: options.actor,
      action: 'blobs.check',
      target: `${moved.length} damaged blob${moved.length === 1 ? '' : 's'}`,
      details: {
        setAside: moved.map((problem) => ({ sha256: problem.sha256, path: problem.setAside })),
        ...Object.fromEntries(BLOB_PROBLEM_KINDS.map((kind) => [kind, result.problems.filter((problem) => problem.problem === kind).length])),
      },
    });
  }
  return result;
}

/** Every registered version, a page at a time. */
async function* versionPages(store: Store, signal: AbortSignal | undefined) {
  for (let after: { model: string; seq: number } | undefined; ; ) {
    signal?.throwIfAborted();
    const page = await store.models.listAllVersions({ after, limit: VERSION_PAGE });
    if (page.length === 0) return;
    yield page;
    const last = page.at(-1)!;
    after = { model: last.model, seq: last.seq };
  }
}

type Checked = { read: number; problem?: Pick<BlobProblem, 'problem' | 'detail' | 'setAside'> };

/** Reads one blob whole: sound, missing or damaged (moved aside by `onDamaged` when given). */
async function checkOne(blobs: BlobStore, sha256: string, bytes: number, onDamaged: OnDamagedBlob | undefined, signal: AbortSignal | undefined): Promise<Checked> {
  let opened: OpenBlob | null;
  try {
    opened = await blobs.openForRead(sha256);
  } catch (error) {
    return unreadable(error);
  }
  if (!opened) {
    const other = await blobs.otherThanFile(sha256);
    if (other) {
      return {
        read: 0,
        problem: { problem: 'unreadable', detail: `${other} is at its address, ${blobs.pathOf(sha256)}, not the file: remove it by hand, then push an artifact that lists it (fleetprune models push DIR)`, setAside: null },
      };
    }
    const earlier = await blobs.hasDamagedCopy(sha256);
    return {
      read: 0,
      problem: {
        problem: 'missing',
        detail: earlier
          ? `not stored: its copy was found damaged earlier and moved to ${blobs.root}/damaged; push an artifact that lists it again (fleetprune models push DIR) to restore it`
          : 'not stored (a data dir restored without its blobs/, or a file removed by hand); push an artifact that lists it again (fleetprune models push DIR) to restore it',
        setAside: null,
      },
    };
  }
  const hash = createHash('sha256');
  let read = 0;
  try {
    for await (const chunk of opened.stream(undefined) as AsyncIterable<Buffer>) {
      signal?.throwIfAborted();
      hash.update(chunk);
      read += chunk.length;
    }
  } catch (error) {
    if (signal?.aborted) throw error;
    return { ...unreadable(error), read };
  } finally {
    await opened.close();
  }
  const actual = hash.digest('hex');
  if (actual === sha256 && read === bytes) return { read };
  // A copy that hashes right but has another size: the manifests listing it are wrong, not the
  // disk (the push check refuses such manifests): nothing to move, and a push would not change it.
  if (actual === sha256) {
    return { read, problem: { problem: 'damaged', detail: `its manifests say ${bytes} bytes; the stored file (which hashes right) has ${read}`, setAside: null } };
  }
  const setAside = onDamaged ? await onDamaged(sha256, actual, opened) : null;
  const then = 'a push of an artifact that lists it (fleetprune models push DIR) uploads it again';
  const outcome = setAside
    ? `moved to ${setAside}, so ${then}`
    : onDamaged
      ? (await blobs.stat(sha256).catch(() => undefined)) === null
        ? `moved aside meanwhile (by a download or another check), so ${then}`
        : 'not moved: another copy replaced it meanwhile (an upload), or it could not be moved (see the server log); check again'
      : `left in place (dry run); a check without --dry-run moves it aside, and then ${then}`;
  // Cut short, or changed in place: what an operator looks for first (a full disk, a copy interrupted).
  const what = read < bytes ? `cut short (${read} of ${bytes} bytes)` : read > bytes ? `longer than listed (${read} bytes, not ${bytes})` : `its bytes hash to ${actual}`;
  return { read, problem: { problem: 'damaged', detail: `${what}: ${outcome}`, setAside } };
}

/** A file the server could not open or read (a disk error, permissions changed by hand): the check goes on with the next. */
function unreadable(error: unknown): Checked {
  const code = (error as NodeJS.ErrnoException).code;
  return {
    read: 0,
    problem: {
      problem: 'unreadable',
      detail: `the server could not read it (${code ?? (error instanceof Error ? error.message : String(error))}): check the disk and the file's owner and mode under the data dir's blobs/`,
      setAside: null,
    },
  };
}

/** Live devices by the version each slot holds (`model@version`). */
async function slotCounts(devices: DevicesRepository, signal: AbortSignal | undefined): Promise<Map<string, SlotCounts>> {
  const counts = new Map<string, SlotCounts>();
  for (let after: string | undefined, page; (signal?.throwIfAborted(), (page = await devices.list({ live: true, after, limit: DEVICE_PAGE }))).length > 0; after = page.at(-1)!.id) {
    for (const device of page) {
      for (const slot of ['active', 'candidate', 'previous'] as const) {
        const ref = device[slot];
        if (!ref) continue;
        const key = `${ref.model}@${ref.version}`;
        const entry = counts.get(key) ?? { active: 0, candidate: 0, previous: 0 };
        entry[slot]++;
        counts.set(key, entry);
      }
    }
  }
  return counts;
}

function sumSlots(counts: (SlotCounts | undefined)[]): SlotCounts {
  const sum: SlotCounts = { active: 0, candidate: 0, previous: 0 };
  for (const count of counts) {
    if (!count) continue;
    sum.active += count.active;
    sum.candidate += count.candidate;
    sum.previous += count.previous;
  }
  return sum;
}
