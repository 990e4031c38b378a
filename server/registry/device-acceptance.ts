import { MAX_MANIFEST_BYTES, type Manifest } from '../../shared/artifact/manifest.ts';
import { ServiceError } from '../app/service-error.ts';

/**
 * What every device would refuse about `manifest` registered as a version of `model`, refused at
 * registration instead (a registered version can be assigned, and would then fail on the whole
 * fleet): a manifest naming another model (agents require manifest.name to be the assignment's
 * model) and a manifest larger than MAX_MANIFEST_BYTES (agents stop reading it there).
 */
export function checkDevicesAccept(model: string, manifest: Manifest): void {
  if (manifest.name !== model) {
    throw new ServiceError(
      'bad_request',
      `manifest.name is ${manifest.name}, but the push registers it as model ${model}: every device refuses a model whose manifest names another (push it as ${manifest.name})`,
    );
  }
  // As GET /api/artifacts/:id/manifest.json serves it (JSON without spaces).
  const bytes = Buffer.byteLength(JSON.stringify(manifest));
  if (bytes > MAX_MANIFEST_BYTES) {
    throw new ServiceError('payload_too_large', `manifest: ${bytes} bytes, more than the ${MAX_MANIFEST_BYTES} bytes a device reads (use fewer or shorter feature and label names)`);
  }
}
