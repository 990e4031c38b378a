import { z } from 'zod';
import type { RouteSpec } from './route-spec.ts';
import { ErrorResponseSchema } from './api-schemas.ts';

/** Express `/models/:name` → OpenAPI `/models/{name}`. */
export function openApiPath(expressPath: string): string {
  return expressPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

function parameters(schema: z.ZodType | undefined, location: 'path' | 'query'): unknown[] {
  if (!schema) return [];
  const object = jsonSchema(schema, 'input') as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
  const parsed = jsonSchema(schema, 'output') as { properties?: Record<string, Record<string, unknown>> };
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: location,
    required: location === 'path' || (object.required ?? []).includes(name),
    schema: wholeNumberParameter(property, parsed.properties?.[name]) ?? property,
  }));
}

/**
 * A query parameter read as a whole number (queryInteger: digits, parsed and bounded) as what a
 * client sends: an integer with its bounds and default, not the digit string the input schema sees.
 */
function wholeNumberParameter(input: Record<string, unknown>, output: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (input.type !== 'string' || input.pattern !== '^\\d+$' || output?.type !== 'number') return undefined;
  const { minimum, maximum } = output;
  const fallback = output.default ?? input.default;
  return {
    type: 'integer',
    ...(typeof minimum === 'number' ? { minimum } : {}),
    ...(typeof maximum === 'number' && maximum < Number.MAX_SAFE_INTEGER ? { maximum } : {}),
    ...(fallback === undefined ? {} : { default: Number(fallback) }),
  };
}

/**
 * The OpenAPI 3.1 document for the REST routes, built from the same zod schemas that validate
 * requests (JSON Schema draft 2020-12, which OpenAPI 3.1 uses). Request bodies are described as
 * the server accepts them (zod input), responses as it sends them (zod output).
 */
export function buildOpenApiDocument(routes: readonly RouteSpec[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = `/api${openApiPath(route.path)}`;
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(route.responses)) {
      const contentType = response.contentType ?? 'application/json';
      // A refusal a route declares (a 404 of its own wording) carries the error body as every other does.
      const schema = response.schema ?? (Number(status) >= 400 ? ErrorResponseSchema : undefined);
      responses[status] = {
        description: response.description,
        ...(schema || response.contentType ? { content: { [contentType]: { schema: schema ? jsonSchema(schema, 'output') : {} } } } : {}),
        ...(response.headers
          ? { headers: Object.fromEntries(Object.entries(response.headers).map(([name, description]) => [name, { description, schema: { type: 'string' } }])) }
          : {}),
      };
    }
    // The refusals every route of its kind may give (README, "Errors"), each with the error body;
    // others (409, 412, 416, 429, 507) are the route's own, and `default` covers them.
    const error = { 'application/json': { schema: jsonSchema(ErrorResponseSchema, 'output') } };
    const refusals: [number, string, boolean][] = [
      // Every route: one without query fields still refuses one it is sent (`?bogus=1`).
      [400, 'bad request: a parameter, query field or body that is not valid, or one the route does not take (the message names it)', true],
      [401, 'no token, or one that is unknown, revoked or expired', route.permission !== null],
      [403, "the token's role does not allow it", route.permission !== null],
      [404, 'no such thing (the message names it)', Boolean(route.params)],
      [413, 'the body is larger than the server takes (--max-body-bytes)', Boolean(route.bodyKind)],
      [415, 'a body in a content type, encoding or charset the server does not read', Boolean(route.bodyKind)],
      [503, "not now: the server's database does not answer, or it is shutting down or taking over (the same request may work shortly; Retry-After)", true],
    ];
    for (const [status, description, applies] of refusals) if (applies && !(String(status) in responses)) responses[status] = { description, content: error };
    responses.default = { description: 'error', content: error };
    const operation: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      tags: [route.tag],
      parameters: [...parameters(route.params, 'path'), ...parameters(route.query, 'query')],
      responses,
      ...(route.permission === null ? { security: [] } : { 'x-required-permission': route.permission }),
    };
    if (route.bodyKind === 'json' && route.body) {
      // An empty body reads as {} (create-http-app.ts): where {} is valid, the body may be left out.
      operation.requestBody = { required: !route.body.safeParse({}).success, content: { 'application/json': { schema: jsonSchema(route.body, 'input') } } };
    } else if (route.bodyKind === 'binary') {
      const types = route.bodyMediaTypes ?? ['application/octet-stream'];
      // The JSON form of a body also sent as text (a rollout spec: JSON or YAML) is an object, not a JSON string.
      const schemaOf = (type: string) => (type === 'application/json' && route.bodyJson ? jsonSchema(route.bodyJson, 'input') : { type: 'string', contentMediaType: type });
      operation.requestBody = { required: true, content: Object.fromEntries(types.map((type) => [type, { schema: schemaOf(type) }])) };
    }
    (paths[path] ??= {})[route.method] = operation;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'fleetprune control plane', version },
    servers: [{ url: '/' }],
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}
