import type { Request, Response } from 'express';
import type { z } from 'zod';
import type { Principal } from '../auth/principal.ts';
import type { Permission } from '../auth/roles.ts';

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface ResponseSpec {
  description: string;
  /** JSON body schema; omit for non-JSON bodies and set contentType. */
  schema?: z.ZodType;
  contentType?: string;
  /** Response headers the route may set: name → description (OpenAPI; string values). */
  headers?: Record<string, string>;
}

export interface RequestContext<P = any, Q = any, B = any> {
  req: Request;
  res: Response;
  /** Null only on public routes. */
  principal: Principal | null;
  params: P;
  query: Q;
  body: B;
}

/** Returned by a handler to answer JSON; a handler that wrote the response itself returns nothing. */
export interface JsonReply {
  status?: number;
  json: unknown;
}

/**
 * One REST operation: the single source for the express route, its validation, its required
 * permission and its OpenAPI entry.
 */
export interface RouteSpec<P = any, Q = any, B = any> {
  method: HttpMethod;
  /** Express pattern relative to /api, e.g. `/models/:name/versions`. */
  path: string;
  operationId: string;
  summary: string;
  tag: string;
  /** null: public. */
  permission: Permission | null;
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  /** `json`: validated against `body`; `binary`: the handler streams `req` itself. */
  bodyKind?: 'json' | 'binary';
  body?: z.ZodType<B>;
  /** For `binary` bodies: the media types the handler accepts (OpenAPI); default application/octet-stream. */
  bodyMediaTypes?: readonly string[];
  /** For `binary` bodies one of whose types is application/json: what that JSON is (OpenAPI only; the handler checks it). */
  bodyJson?: z.ZodType;
  responses: Record<number, ResponseSpec>;
  handle(ctx: RequestContext<P, Q, B>): Promise<JsonReply | void>;
}

/** Identity with inference, so each route's handler sees its own parameter and body types. */
export function defineRoute<P, Q, B>(spec: RouteSpec<P, Q, B>): RouteSpec {
  return spec as RouteSpec;
}
