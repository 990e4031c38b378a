import { z } from 'zod';

/** Model names: 1-64 of [A-Za-z0-9._-], not starting with a dot (so never `.`, `..` or hidden). */
export const ModelNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with a dot');

export const ALIASES = ['candidate', 'production'] as const;
export const AliasSchema = z.enum(ALIASES);
export type Alias = z.infer<typeof AliasSchema>;

/** References that name a version indirectly, so no version may be called that. */
export const RESERVED_VERSION_NAMES = new Set<string>([...ALIASES, 'latest']);

/** Versions: the same characters as names plus `+`, not starting with a dot, not an alias or `latest`. */
export const VersionNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ + - and not start with a dot')
  .refine((value) => !RESERVED_VERSION_NAMES.has(value), 'must not be "candidate", "production" or "latest"');

/** A version, an alias, or `latest`, as in `iris@production`. */
export const VersionRefSchema = z.string().regex(/^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}$/, 'must be a version, an alias or "latest"');
