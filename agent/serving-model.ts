import type { Manifest } from '../shared/artifact/manifest.ts';
import type { ModelRef } from '../shared/protocol/payloads.ts';
import type { SessionLease } from './session-cache.ts';

/** A verified model loaded for serving: its slot reference, its manifest and its session. */
export interface ServingModel {
  ref: ModelRef;
  manifest: Manifest;
  lease: SessionLease;
}
