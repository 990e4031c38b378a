import { ONNX_FILE, type Manifest } from '../../shared/artifact/manifest.ts';
import type { BlobStore } from './blob-store.ts';

/**
 * Why devices could not download a registered version, or null: its model.onnx (the file a
 * device downloads) is not in the blob store, as after a data dir restored without its blobs/ or a
 * file removed by hand. An assignment of it would be accepted and every device fail at download.
 */
export async function lostModelFile(version: { model: string; version: string; manifest: Manifest }, blobs: Pick<BlobStore, 'openForRead'>): Promise<string | null> {
  const file = version.manifest.files[ONNX_FILE];
  if (!file) return null;
  // Opened, not only looked for: a blob a collection set aside (and died before deciding) is taken
  // back, as a device's download would take it back.
  const open = await blobs.openForRead(file.sha256);
  const stored = open ? { bytes: open.bytes } : null;
  await open?.close();
  if (stored && stored.bytes === file.bytes) return null;
  return (
    `${version.model}@${version.version}'s ${ONNX_FILE} (sha256 ${file.sha256.slice(0, 12)}…) is ${stored ? `damaged in the server's blob store (${stored.bytes} bytes, not ${file.bytes})` : "missing from the server's blob store"} ` +
    '(a data dir restored without its blobs/, or a file removed by hand): `fleetprune models push DIR` of its artifact uploads it again'
  );
}
