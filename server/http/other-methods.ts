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
export function answerOtherMethods(api: express.Router, routes: readonly Pick<RouteSpec, 'path' | 'method'>[]): void {
  const methodsByPath = new Map<string, Set<string>>();
  for (const route of routes) {
    const methods = methodsByPath.get(route.path) ?? new Set<string>();
    methods.add(route.method.toUpperCase());
    // express answers HEAD with a GET route.
    if (route.method === 'get') methods.add('HEAD');
    methodsByPath.set(route.path, methods);
  }
  for (const [path, methods] of methodsByPath) {
    api.all(path, (_req, res, next) => {
      const allowed = (res.locals.allowedMethods ??= new Set<string>()) as Set<string>;
      for (const method of methods) allowed.add(method);
      next();
    });
  }
  api.use((req, res, next) => {
    const allowed = res.locals.allowedMethods as Set<string> | undefined;
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
