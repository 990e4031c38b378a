import { createHash } from 'node:crypto';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError } from '../app/service-error.ts';
import type { BlobStore, OpenBlob } from './blob-store.ts';

/** A download that found the server's copy of a blob damaged: cut off before its last piece. */
export class DamagedBlobError extends ServiceError {
  constructor(
    readonly sha256: string,
    readonly actual: string,
    cutOff = true,
  ) {
    super('data_loss', `the server's copy of blob ${sha256} is damaged (its bytes hash to ${actual}); ${cutOff ? 'the download was cut off before its end' : 'nothing of it was sent'}. Push the artifact again to restore it`);
    this.name = 'DamagedBlobError';
  }
}

/** What a download does when the copy it sent turns out damaged (see damagedBlobHandler); where the copy went, if it was moved. */
export type OnDamagedBlob = (sha256: string, actual: string, opened: OpenBlob) => Promise<string | null>;

/**
 * The chunks of a whole blob as they are read, hashed on the way, the last one held back until
 * the hash is known: a copy damaged on the server's disk (cut short, or changed in place) is never
 * sent whole. It ends in a DamagedBlobError instead, after `onDamaged`, and the client (which
 * checks the hash too) sees a download cut short rather than a wrong file answered 200.
 */
export async function* verifiedChunks(chunks: AsyncIterable<Buffer>, sha256: string, opened: OpenBlob, onDamaged: OnDamagedBlob): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let held: Buffer | undefined;
  for await (const chunk of chunks) {
    hash.update(chunk);
    if (held) yield held;
    held = chunk;
  }
  const actual = hash.digest('hex');
  if (actual !== sha256) {
    await onDamaged(sha256, actual, opened);
    throw new DamagedBlobError(sha256, actual);
  }
  if (held) yield held;
}

/**
 * The server's answer to a damaged copy: it is moved out of its address (BlobStore.setAsideDamaged),
 * so that the blob reads as not stored and the next `models push` of an artifact listing it uploads
 * it again; the server log says so, and fleetprune_blobs_damaged_total counts it.
 */
export function damagedBlobHandler(blobs: BlobStore, log: Logger, counter: { inc(): void }): OnDamagedBlob {
  return async (sha256, actual, opened) => {
    const aside = await blobs.setAsideDamaged(sha256, opened).catch((error: unknown) => {
      log.error({ sha256, err: String(error) }, 'could not set a damaged blob aside');
      return null;
    });
    // Counted once per damaged copy: a download or check that finds the address empty now was beaten
    // to it by another, which moved the copy and counted it.
    const movedByAnother = aside === null && (await blobs.stat(sha256).catch(() => undefined)) === null;
    if (movedByAnother) {
      log.warn({ sha256, actual }, 'a stored copy of a blob read as damaged was moved aside meanwhile (by another download or check)');
      return null;
    }
    counter.inc();
    log.error(
      { sha256, actual, setAside: aside },
      `the stored copy of blob ${sha256} is damaged (its bytes hash to ${actual})${aside ? `: moved to ${aside}` : ''}; push an artifact that lists it again (fleetprune models push) to restore it`,
    );
    return aside;
  };
}

/** The 404 of a blob not stored; one whose copy was found damaged and set aside says so. */
export async function blobNotFound(blobs: BlobStore, sha256: string): Promise<ServiceError> {
  return new ServiceError(
    'not_found',
    (await blobs.hasDamagedCopy(sha256))
      ? `no blob ${sha256}: the server's copy was found damaged and set aside; push an artifact that lists it again to restore it`
      : `no blob ${sha256}`,
  );
}
