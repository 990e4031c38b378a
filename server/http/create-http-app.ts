import express, { type NextFunction, type Request, type Response } from 'express';
import { isUtf8 } from 'node:buffer';
import { z } from 'zod';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError } from '../app/service-error.ts';
import type { Principal } from '../auth/principal.ts';
import type { TokenService } from '../auth/token-service.ts';
import type { ServerMetrics } from '../metrics/server-metrics.ts';
import { buildOpenApiDocument } from './openapi.ts';
import type { RouteSpec } from './route-spec.ts';
import { duplicateJsonKey } from '../../shared/util/duplicate-keys.ts';
import { printable } from '../../shared/util/printable.ts';
import { limitBodySize } from './body-size-limit.ts';
import { contentCharset, readsAsUtf8 } from '../../shared/http/content-charset.ts';
import { requestError } from './request-errors.ts';
import { sendError } from './send-error.ts';
import { refuseNonUtf8Query, refuseRepeatedQuery, validatePart } from './validate-request.ts';
import { refuseBody } from './no-body.ts';
import { answerOtherMethods, guardFixedPaths } from './other-methods.ts';

/** The query of a route that takes no query parameters. */
const NO_QUERY = z.strictObject({});

export interface HttpAppDeps {
  routes: readonly RouteSpec[];
  /** Routers served outside /api, such as the dashboard. */
  pages?: readonly express.Router[];
  tokens: TokenService;
  metrics: ServerMetrics;
  log: Logger;
  maxBodyBytes: number;
  version: string;
  /** GET /metrics needs a token allowed to read (viewer and up) when true. */
  metricsNeedToken?: boolean;
  /** False until start-up finished; /healthz answers 503 until then. */
  isReady(): boolean;
  /** What GET /readyz asks besides isReady: whether the store answers, and whether this server leads the rollouts. */
  readiness?: { storeUp(): Promise<boolean>; leader(): Promise<{ isLeader: boolean; leader: string | null; driving: boolean }> };
}

/** The express app: /healthz, /metrics, /api/openapi.json and every module's routes under /api. */
export function createHttpApp(deps: HttpAppDeps): express.Express {
  const { routes, tokens, metrics, log } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((req, res, next) => {
    // Every answer (the API's JSON and errors, /metrics, the dashboard's pages and scripts) is
    // taken as the type it declares: a browser never sniffs an error page or a JSON body as markup
    // or script.
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const stop = metrics.httpDuration.startTimer();
    const route = () => (req.route?.path ? `${req.baseUrl}${req.route.path}` : 'unmatched');
    res.on('finish', () => stop({ method: req.method, route: route(), code: String(res.statusCode) }));
    // A request whose client left before the answer ended (an event stream closed, a download given
    // up) is counted too, as nginx logs it: code 499 (client closed request). A download piped into
    // the response adds ten 'close' listeners of its own (stream.pipeline, the blob's file): room
    // for this one, without Node's warning of a listener leak on every download.
    res.setMaxListeners(res.getMaxListeners() + 1);
    res.on('close', () => {
      if (!res.writableFinished) stop({ method: req.method, route: route(), code: '499' });
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    if (deps.isReady()) res.status(200).json({ status: 'ok' });
    else res.status(503).json({ status: 'starting' });
  });
  // Readiness, for a load balancer or an orchestrator: /healthz says the process runs (a restart
  // would not bring a database back); /readyz also that its store answers, and with
  // ?role=leader that it leads the rollouts (where rollout commands and fleet changes go when
  // several servers share one PostgreSQL database). No token: it tells nothing but that.
  app.get('/readyz', async (req, res) => {
    // A load balancer's check with a typo (?Role=leader) must not pass on every server: anything
    // but one role=leader is refused, as the API's routes refuse a query field they do not know.
    const unknown = Object.keys(req.query).find((key) => key !== 'role');
    if (unknown !== undefined) {
      res.status(400).json({ error: { code: 'bad_request', message: `query.${printable(unknown.slice(0, 60))}: unknown field (GET /readyz takes only role=leader)` } });
      return;
    }
    const role = req.query.role;
    if (role !== undefined && role !== 'leader') {
      res.status(400).json({ error: { code: 'bad_request', message: `role: must be "leader" (or left out), not ${printable(JSON.stringify(role).slice(0, 60))}` } });
      return;
    }
    if (!deps.isReady()) {
      res.status(503).json({ status: 'starting' });
      return;
    }
    const readiness = deps.readiness;
    if (readiness && !(await readiness.storeUp())) {
      res.status(503).json({ status: 'store-unavailable', message: 'the database does not answer' });
      return;
    }
    const leader = readiness ? await readiness.leader().catch(() => undefined) : { isLeader: true, leader: null, driving: true };
    if (!leader) {
      res.status(503).json({ status: 'store-unavailable', message: 'the rollout leader cannot be looked up' });
      return;
    }
    if (role === 'leader' && !leader.isLeader) {
      res.status(503).json({ status: 'standby', leader: leader.leader });
      return;
    }
    if (role === 'leader' && !leader.driving) {
      // Elected, but it takes no rollout commands: a moment ago, or its takeover failed.
      res.status(503).json({ status: 'taking-over', message: 'this server leads but takes no rollout commands (elected a moment ago, or its takeover failed: see its log)' });
      return;
    }
    res.status(200).json({ status: 'ready', role: leader.isLeader ? 'leader' : 'standby' });
  });
  app.get('/metrics', async (req, res) => {
    try {
      if (deps.metricsNeedToken) await tokens.authorize(req.headers.authorization, 'read');
      res.setHeader('Content-Type', metrics.registry.contentType);
      res.send(await metrics.registry.metrics());
    } catch (error) {
      sendError(res, error, log);
    }
  });
  // As on the API's routes: DELETE /healthz is a 405 naming GET, not a 404 saying there is no such path.
  answerOtherMethods(app, [
    { path: '/healthz', method: 'get' },
    { path: '/readyz', method: 'get' },
    { path: '/metrics', method: 'get' },
  ]);

  const api = express.Router();
  // Built at its first request, not at every start: converting every route's schemas to JSON
  // Schema costs about 0.14 CPU-s.
  let openApi: Record<string, unknown> | undefined;
  api.get('/openapi.json', (_req, res) => {
    openApi ??= buildOpenApiDocument(routes, deps.version);
    res.json(openApi);
  });
  const rawBodies = new WeakMap<object, Buffer>();
  const parseJson = express.json({
    limit: deps.maxBodyBytes,
    // Any JSON value parses: `null` or `42` is then told the body must be an object (validatePart),
    // rather than called malformed JSON with a made-up parse error.
    strict: false,
    type: () => true,
    // Kept for the duplicate-key check, which runs once the body passed validatePart's depth limit.
    verify: (req, _res, raw) => {
      // Decoded as it is, a byte that is not UTF-8 becomes U+FFFD and is stored so, without a word.
      if (!isUtf8(raw)) throw new ServiceError('bad_request', `body: not valid UTF-8; send JSON as UTF-8`);
      rawBodies.set(req, raw);
    },
  });
  const readJsonBody: express.RequestHandler = (req, res, next) => {
    // A request with neither Content-Length nor Transfer-Encoding has an empty body (RFC 9112 §6.3),
    // as one with Content-Length: 0 does: both read as {}. (req.is answers null for it, whatever its type.)
    const noBody = req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
    // Nothing sent, with no type named (a client leaving out a body whose fields are all optional,
    // as the OpenAPI document allows): {} too; a type named must be JSON's.
    const typeless = req.headers['content-type'] === undefined && (noBody || req.headers['content-length'] === '0');
    if (typeless) {
      req.body = {};
      next();
      return;
    }
    const saysJson = noBody ? (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase() === 'application/json' : req.is('application/json');
    if (!saysJson) {
      next(new ServiceError('unsupported_media_type', 'body: send JSON with Content-Type: application/json'));
      return;
    }
    // body-parser decodes any utf-* charset (UTF-16 too), but the duplicate-key check reads the raw
    // bytes as UTF-8: a UTF-16 body would pass it unchecked. JSON is UTF-8 (RFC 8259 §8.1).
    const charset = contentCharset(req.headers['content-type']);
    if (!readsAsUtf8(charset)) {
      next(new ServiceError('unsupported_media_type', `body: unsupported charset "${charset!.toUpperCase()}"; send JSON as UTF-8`));
      return;
    }
    // body-parser takes only the `utf-…` spellings: the others that read as UTF-8 (utf8, us-ascii)
    // are named as it knows them, as the rollout spec route (readTextBody) takes them too.
    if (charset !== null && charset !== 'utf-8') req.headers['content-type'] = 'application/json; charset=utf-8';
    if (noBody) {
      req.body = {};
      next();
      return;
    }
    // body-parser refuses an oversized body only once it has read all of it (or never, when the
    // declared length is never sent): refuse it here, at once, by its declared or counted size.
    if (!limitBodySize(req, res, deps.maxBodyBytes, log)) return;
    // validatePart then refuses `__proto__` keys, NUL characters and deep nesting, naming where.
    parseJson(req, res, next);
  };
  guardFixedPaths(api, routes);
  for (const route of routes) {
    // The token is checked before the body is read: a caller without one learns nothing about its body.
    const handlers: express.RequestHandler[] = [
      async (req, res, next) => {
        try {
          res.locals.principal = route.permission === null ? null : await tokens.authorize(req.headers.authorization, route.permission);
        } catch (error) {
          sendError(res, error, log);
          return;
        }
        const principal = res.locals.principal as Principal | null;
        if (principal) {
          // A request still under way when its token is revoked (an event stream, a long download) stops at once.
          // An event stream ends cleanly, with an `error` event saying why; anything else (a download being piped) is cut off.
          // A request that revokes its own token (DELETE /api/tokens/<its id>) is answered, not cut off.
          const stop = (why: string) => {
            if (res.locals.revokesOwnToken === true) return;
            if (res.getHeader('content-type')?.toString().startsWith('text/event-stream')) {
              // Its last event says why, as a request would be answered (401): the stream does not just stop.
              if (!res.writableEnded) res.write(`event: error\ndata: ${JSON.stringify({ error: { code: 'unauthenticated', message: why } })}\n\n`);
              res.end();
            } else res.destroy();
          };
          const unwatch = tokens.revocations.watch(principal.tokenId, stop);
          res.on('close', unwatch);
        }
        next();
      },
    ];
    if (route.bodyKind === 'json') handlers.push(readJsonBody);
    // A route without a body refuses one (an empty JSON object aside), rather than ignoring it.
    else if (route.bodyKind === undefined) handlers.push(refuseBody(route, log));
    handlers.push(async (req: Request, res: Response) => {
      try {
        const principal = res.locals.principal as Principal | null;
        const params = validatePart(route.params, req.params, 'path');
        // A route that takes no query parameters refuses them, as the others refuse unknown ones:
        // GET /api/models?limit=1 answering with every model would look like a paging bug.
        refuseNonUtf8Query(req.originalUrl);
        const rawQuery = { ...(req.query as Record<string, unknown>) };
        refuseRepeatedQuery(rawQuery, route.query ?? NO_QUERY);
        const query = validatePart(route.query ?? NO_QUERY, rawQuery, 'query');
        // A key given twice is the answer before what its last value lacks (JSON.parse kept the last).
        if (route.bodyKind === 'json') refuseDuplicateKeys(rawBodies.get(req));
        const body = route.bodyKind === 'json' ? validatePart(route.body, req.body, 'body') : undefined;
        const reply = await route.handle({ req, res, principal, params, query, body });
        if (reply && !res.headersSent) res.status(reply.status ?? 200).json(reply.json);
      } catch (error) {
        sendError(res, error, log);
      }
    });
    api[route.method](route.path, ...handlers);
  }
  answerOtherMethods(api, [...routes, { path: '/openapi.json', method: 'get' }]);
  api.use((req, _res, next) => next(new ServiceError('not_found', `no API route ${req.method} ${req.baseUrl}${req.path}`)));
  app.use(
    '/api',
    (_req, res, next) => {
      // An API answer is live state, and some hold secrets (a new token, an enrolled device's
      // config): no cache or proxy keeps it (RFC 6749 §5.1 asks this of token answers). Downloads
      // and event streams set their own.
      res.setHeader('Cache-Control', 'no-store');
      next();
    },
    api,
  );
  for (const pages of deps.pages ?? []) app.use(pages);
  app.use((req, _res, next) => next(new ServiceError('not_found', `no route ${req.method} ${req.path}`)));
  // express recognises error handlers by their four parameters.
  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const refused = requestError(error, req);
    if (refused) log.debug({ method: req.method, code: refused.code, reason: refused.message }, 'refused a malformed request');
    sendError(res, refused ?? error, log);
  });
  return app;
}

/** JSON.parse keeps the last of two equal keys: a body that says two things is refused instead. */
function refuseDuplicateKeys(raw: Buffer | undefined): void {
  const duplicate = raw === undefined ? null : duplicateJsonKey(raw.toString('utf8'));
  if (duplicate !== null) throw new ServiceError('bad_request', `body.${duplicate}: given twice; send each field once`);
}

