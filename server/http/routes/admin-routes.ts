import { z } from 'zod';
import { reasonSchema } from '../../rollout/operator-text.ts';
import type { ServerContext } from '../../app/server-context.ts';
import { actorOf } from '../../auth/principal.ts';
import { RoleSchema } from '../../auth/roles.ts';
import { TokenIdSchema } from '../../auth/token-id.ts';
import { TokenLifetimeSchema } from '../../auth/token-lifetime.ts';
import { AuditEntrySchema, TokenSchema, queryInteger } from '../api-schemas.ts';
import { AuditFilterSchema } from '../../auth/audit-service.ts';
import { defineRoute, type RouteSpec } from '../route-spec.ts';

export const CreateTokenBodySchema = z.strictObject({
  role: RoleSchema,
  // Shown in one-line tables and the audit log: no newline or escape sequence (tab aside), as for a reason.
  label: reasonSchema(1, 200).optional(),
  /** The token stops working this long after its creation; omitted, never. At most ten years. */
  expiresInSeconds: TokenLifetimeSchema.optional(),
});

const AuditQuerySchema = z.strictObject({
  limit: queryInteger(1, 1000).optional(),
  before: queryInteger(1).optional(),
  ...AuditFilterSchema.shape,
});

/** Tokens (admin only), the caller's own token (whoami) and the audit log (viewer and up). */
export function adminRoutes(ctx: ServerContext): RouteSpec[] {
  return [
    defineRoute({
      method: 'get',
      path: '/whoami',
      operationId: 'whoami',
      summary: "The calling token's id, role and label (the dashboard turns off what the role may not do)",
      tag: 'tokens',
      permission: 'read',
      responses: { 200: { description: 'the caller', schema: z.strictObject({ tokenId: z.string(), role: RoleSchema, label: z.string() }) } },
      handle: async ({ principal }) => ({ json: { tokenId: principal!.tokenId, role: principal!.role, label: principal!.label } }),
    }),
    defineRoute({
      method: 'post',
      path: '/tokens',
      operationId: 'createToken',
      summary: 'Create a bearer token, optionally expiring expiresInSeconds from now; the secret is in this response only',
      tag: 'tokens',
      permission: 'admin',
      bodyKind: 'json',
      body: CreateTokenBodySchema,
      responses: { 201: { description: 'the new token', schema: z.strictObject({ token: z.string(), record: TokenSchema }) } },
      handle: async ({ body, principal }) => {
        const created = await ctx.tokens.create(body.role, body.label ?? `${body.role} token`, actorOf(principal!), { expiresInSeconds: body.expiresInSeconds });
        return { status: 201, json: created };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/tokens',
      operationId: 'listTokens',
      summary: 'List tokens (never their secrets)',
      tag: 'tokens',
      permission: 'admin',
      responses: { 200: { description: 'tokens', schema: z.strictObject({ tokens: z.array(TokenSchema) }) } },
      handle: async () => ({ json: { tokens: await ctx.tokens.list() } }),
    }),
    defineRoute({
      method: 'delete',
      path: '/tokens/:id',
      operationId: 'revokeToken',
      summary: "Revoke a token (a device's own token is revoked with the device: 409 here)",
      tag: 'tokens',
      permission: 'admin',
      params: z.strictObject({ id: TokenIdSchema }),
      responses: { 204: { description: 'revoked' } },
      handle: async ({ params, principal, res }) => {
        // Revoking the calling token itself must still get its 204 (see createHttpApp).
        if (params.id === principal!.tokenId) res.locals.revokesOwnToken = true;
        await ctx.tokens.revoke(params.id, principal!);
        res.status(204).end();
      },
    }),
    defineRoute({
      method: 'get',
      path: '/audit',
      operationId: 'listAudit',
      summary: 'Who changed what and when, newest first (page with ?before=<id>; ?action=, ?actor=, ?target=: each matched exactly, or as a beginning when it ends in *: rollout.*, wine@*)',
      tag: 'audit',
      permission: 'read',
      query: AuditQuerySchema,
      responses: { 200: { description: 'entries', schema: z.strictObject({ entries: z.array(AuditEntrySchema) }) } },
      handle: async ({ query }) => {
        const { before, limit, ...filter } = query;
        return { json: { entries: await ctx.audit.list({ beforeId: before, limit, ...filter }) } };
      },
    }),
  ];
}
