import type { Manifest } from '../shared/artifact/manifest.ts';

/**
 * Whether a signed manifest is the model something names (`source`: an assignment, state.json):
 * null when it is, else a one-line reason. The model name is always signed; the version only when
 * the manifest carries one (the registry may number a version at push).
 */
export function manifestIdentityProblem(manifest: Manifest, named: { model: string; version: string }, source: string): string | null {
  if (manifest.name !== named.model) return `manifest: model is ${manifest.name}, but ${source} names ${named.model}`;
  if (manifest.version !== undefined && manifest.version !== named.version) return `manifest: version is ${manifest.version}, but ${source} names ${named.version}`;
  return null;
}
