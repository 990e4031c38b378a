import type { Manifest } from '../../shared/artifact/manifest.ts';
import { ServiceError } from '../app/service-error.ts';
import type { Principal } from '../auth/principal.ts';
import { DeviceAssignmentsRepository } from '../store/repositories/device-assignments-repository.ts';
import { DevicesRepository } from '../store/repositories/devices-repository.ts';
import { fromJsonColumn } from '../store/repositories/json-column.ts';
import type { SqlExecutor } from '../store/sql-engine.ts';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** What a download asks for: a registered artifact's manifest, or a file by its hash. */
export type DownloadTarget = { artifactId: string } | { blob: string };

/**
 * Which artifacts a caller may download. The token an enrolled device holds (issued with it at
 * enrollment, kept on the device's disk in the field) fetches only what the server assigned to
 * that device: the manifest of an artifact named by one of its assignments, and the files that
 * manifest lists. A leaked device token then exposes that device's models, not every registered
 * one. Any other token with the download permission (viewer and up, or a device-role token an
 * admin made for a mirror, held by no device) downloads any artifact.
 *
 * The assignment is recorded before it is published, so a device never asks for a file before
 * its assignment is on record; assignment records the retention sweep keeps include the one each
 * device holds retained (which a device restoring a lost model downloads again).
 */
export class DownloadScope {
  readonly #devices: DevicesRepository;
  readonly #assignments: DeviceAssignmentsRepository;

  constructor(db: SqlExecutor) {
    this.#devices = new DevicesRepository(db);
    this.#assignments = new DeviceAssignmentsRepository(db);
  }

  /** Throws 403 when `principal` may not download `target`. The target's hash is checked (64 hex digits) first. */
  async check(principal: Principal, target: DownloadTarget): Promise<void> {
    if (principal.role !== 'device') return;
    const hash = 'artifactId' in target ? target.artifactId : target.blob;
    if (!SHA256_HEX.test(hash)) throw new ServiceError('bad_request', 'sha256: must be 64 lowercase hex digits');
    const deviceId = await this.#devices.holderOfToken(principal.tokenId);
    if (deviceId === undefined) return;
    if ('artifactId' in target) {
      if (await this.#assignments.wasAssigned(deviceId, hash)) return;
      throw new ServiceError('forbidden', `device ${deviceId} may download only the artifacts assigned to it, and artifact ${hash} never was`);
    }
    for (const stored of await this.#assignments.assignedManifestsMentioning(deviceId, hash)) {
      const manifest = fromJsonColumn<Pick<Manifest, 'files'>>(stored);
      if (Object.values(manifest.files ?? {}).some((file) => file.sha256 === hash)) return;
    }
    throw new ServiceError('forbidden', `device ${deviceId} may download only the files of artifacts assigned to it, and no assigned artifact lists file ${hash}`);
  }
}
