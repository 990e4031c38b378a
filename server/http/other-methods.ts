import type express from 'express';
import { ServiceError } from '../app/service-error.ts';
import type { RouteSpec } from './route-spec.ts';

/**
 * A path the API serves, asked with a method it does not serve there: 405 naming the methods it
 * does in Allow (RFC 9110 §15.5.6), and OPTIONS answered with them, rather than a 404 that says
 * the path does not exist. Each path pattern adds its methods as the request passes it (one
 * request path can match several patterns: /models/:name and /models/aliases). Also used for the
 * paths served outside the route specs (/api/openapi.json, /healthz and /metrics on the app, the dashboard's pages).
 */
type MethodRoute = Pick<RouteSpec, 'path' | 'method'> & { params?: RouteSpec['params'] };

/** Methods by path pattern (HEAD with GET: express answers HEAD with a GET route), and each pattern's params schema. */
function methodsByPath(routes: readonly MethodRoute[]): Map<string, { methods: Set<string>; params: RouteSpec['params'] }> {
  const byPath = new Map<string, { methods: Set<string>; params: RouteSpec['params'] }>();
  for (const route of routes) {
    const entry = byPath.get(route.path) ?? { methods: new Set<string>(), params: route.params };
    entry.methods.add(route.method.toUpperCase());
    if (route.method === 'get') entry.methods.add('HEAD');
    byPath.set(route.path, entry);
  }
  return byPath;
}

/** Whether a path pattern's params schema takes these values (`blobs/gc` is no `blobs/:sha256`): one that refuses them never serves the path. */
function accepts(params: RouteSpec['params'], values: Record<string, string>): boolean {
  return params === undefined || params.safeParse(values).success;
}

export function answerOtherMethods(api: express.Router, routes: readonly MethodRoute[]): void {
  for (const [path, { methods, params }] of methodsByPath(routes)) {
    api.all(path, (req, res, next) => {
      // A pattern whose parameters refuse this path's values (`/blobs/:sha256` for /blobs/gc)
      // offers it its methods only when no pattern takes them (`/jobs/JOB-1`: a malformed id,
      // which GET answers 400, is still a path GET serves).
      const taken = accepts(params, req.params as Record<string, string>);
      const allowed = (taken ? (res.locals.allowedMethods ??= new Set<string>()) : (res.locals.refusedMethods ??= new Set<string>())) as Set<string>;
      for (const method of methods) allowed.add(method);
      next();
    });
  }
  api.use((req, res, next) => {
    const allowed = (res.locals.allowedMethods ?? res.locals.refusedMethods) as Set<string> | undefined;
    if (!allowed) {
      next();
      return;
    }
    const allow = [...allowed, 'OPTIONS'].sort().join(', ');
    res.setHeader('Allow', allow);
    if (req.method === 'OPTIONS') res.status(204).end();
    else next(new ServiceError('method_not_allowed', `${req.method} is not served on ${req.baseUrl}${req.path}; allowed: ${allow}`));
  });
}

/**
 * Paths without parameters (POST /jobs/prune, POST /blobs/gc) asked with a method they do not
 * serve: 405 naming the methods that do serve them, before a parameterised pattern of the same
 * shape (/jobs/:id, /blobs/:sha256) takes the fixed name for its parameter and refuses it as a
 * malformed id or hash. A pattern whose parameters accept the fixed name (a version may be called
 * `check`: GET /models/:name/versions/:ref) still serves it with its own methods.
 * Registered before the routes.
 */
export function guardFixedPaths(api: express.Router, routes: readonly MethodRoute[]): void {
  const byPath = methodsByPath(routes);
  for (const [path, { methods }] of byPath) {
    if (path.includes(':')) continue;
    const allowed = new Set(methods);
    for (const [pattern, other] of byPath) {
      if (pattern === path || !pattern.includes(':')) continue;
      const values = matchPattern(pattern, path);
      if (values && accepts(other.params, values)) for (const method of other.methods) allowed.add(method);
    }
    const allow = [...allowed, 'OPTIONS'].sort().join(', ');
    api.all(path, (req, res, next) => {
      // OPTIONS is answerOtherMethods' (after every route), with the same methods.
      if (req.method === 'OPTIONS' || allowed.has(req.method)) return next();
      res.setHeader('Allow', allow);
      next(new ServiceError('method_not_allowed', `${req.method} is not served on ${req.baseUrl}${req.path}; allowed: ${allow}`));
    });
  }
}

/** The parameter values of `pattern` (`/jobs/:id`) for the fixed `path` (`/jobs/prune`), or null when it does not match it. */
function matchPattern(pattern: string, path: string): Record<string, string> | null {
  const wanted = pattern.split('/');
  const given = path.split('/');
  if (wanted.length !== given.length) return null;
  const values: Record<string, string> = {};
  for (const [i, part] of wanted.entries()) {
    if (part.startsWith(':')) values[part.slice(1)] = given[i]!;
    else if (part !== given[i]) return null;
  }
  return values;
}
