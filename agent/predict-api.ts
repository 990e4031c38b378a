import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import { guardBodySize } from '../shared/http/body-size-guard.ts';
import { contentCharset, readsAsUtf8 } from '../shared/http/content-charset.ts';
import { undecodableBody } from '../shared/http/undecodable-body.ts';
import { columnKey } from '../shared/util/canonical-text.ts';
import { duplicateJsonKey } from '../shared/util/duplicate-keys.ts';
import type { Logger } from '../shared/util/log.ts';
import type { AgentMetrics } from './agent-metrics.ts';
import { expectedOutput } from './model-interface.ts';
import { ModelOutputError, runModel } from './onnx-runner.ts';
import { firstNonFiniteRow, parsePredictRows, predictionsAgree, toPredictions } from './predict-rows.ts';
import type { ServingModel } from './serving-model.ts';

/** The largest /v1/predict body (1 MiB): 1,024 rows of a few hundred features. */
export const MAX_PREDICT_BODY_BYTES = 1024 * 1024;

/** Cumulative serving counters, reported in heartbeats. */
export interface ServingStats {
  predictions: number;
  /** Rows of requests the active model failed: its run threw (500) or gave a non-finite output (422). */
  errors: number;
  shadowRows: number;
  shadowAgreements: number;
  /** Rows whose shadow run on the candidate failed (the candidate's live error count). */
  shadowErrors: number;
}

export interface PredictApiOptions {
  stats: ServingStats;
  active: () => ServingModel | undefined;
  /** Why there is no active model, when the agent knows (it failed verification at start): said in the 503. */
  inactiveReason?: () => string | undefined;
  candidate: () => ServingModel | undefined;
  /** Fraction of requests (0..1) also run on the candidate, after the response is sent. */
  shadowFraction: number;
  metrics: AgentMetrics;
  logger: Logger;
  random?: () => number;
  health: () => Record<string, unknown>;
}

/**
 * The device's HTTP API: POST /v1/predict (active model; optional shadow run of the candidate),
 * GET /metrics (the agent's registry) and GET /healthz.
 */
export function createPredictApp(options: PredictApiOptions): Express {
  const { metrics, logger } = options;
  const random = options.random ?? Math.random;
  const app = express();
  app.disable('x-powered-by');
  // Only /v1/predict reads a body. Any JSON value parses (strict: false), so `null` or `42` is
  // told what shape is expected rather than called invalid JSON; the raw text is kept for the
  // duplicate-key check.
  const rawBodies = new WeakMap<object, Buffer>();
  /** Requests whose failed rows are already in stats.errors. */
  const rowsCounted = new WeakSet<object>();
  const readJson = express.json({ limit: MAX_PREDICT_BODY_BYTES, strict: false, verify: (request, _response, raw) => void rawBodies.set(request, raw) });
  const readPredictBody: RequestHandler = (request, response, next) => {
    // Neither Content-Length nor Transfer-Encoding is an empty body (RFC 9112 §6.3), as Content-Length: 0 is;
    // req.is() answers null for it whatever its type, which read as "not JSON".
    const { 'content-length': length, 'transfer-encoding': chunked } = request.headers;
    const refuseEmpty = () => {
      metrics.predictRequests.inc({ status: '400' });
      response.status(400).json({ error: 'the body is empty; send {"rows": [...]} as JSON (Content-Type: application/json)' });
    };
    if ((length === undefined && chunked === undefined) || length === '0') {
      refuseEmpty();
      return;
    }
    if (!request.is('application/json')) {
      metrics.predictRequests.inc({ status: '415' });
      response.status(415).json({ error: 'send the rows as JSON (Content-Type: application/json)' });
      return;
    }
    // body-parser decodes any utf-* charset (UTF-16 too), but the duplicate-key check reads the raw
    // bytes as UTF-8: a UTF-16 body would pass it unchecked. JSON is UTF-8 (RFC 8259 §8.1).
    const charset = contentCharset(request.headers['content-type']);
    if (!readsAsUtf8(charset)) {
      metrics.predictRequests.inc({ status: '415' });
      response.status(415).json({ error: `unsupported charset "${charset!.toUpperCase()}"; send the rows as UTF-8 JSON` });
      return;
    }
    // body-parser takes only the `utf-…` spellings: the others that read as UTF-8 (utf8, us-ascii) are named as it knows them.
    if (charset !== null && charset !== 'utf-8') request.headers['content-type'] = 'application/json; charset=utf-8';
    // body-parser answers 413 only once it has read the whole body (or never, for a declared
    // length never sent): refused here at once, and the connection closed rather than drained.
    const refuse = () => {
      if (response.headersSent) return;
      metrics.predictRequests.inc({ status: '413' });
      response.status(413).set('Connection', 'close').json({ error: `the body is larger than the ${MAX_PREDICT_BODY_BYTES}-byte limit` });
    };
    if (!guardBodySize(request, MAX_PREDICT_BODY_BYTES, refuse)) return;
    readJson(request, response, (error?: unknown) => {
      // A chunked body of no bytes, or a compressed one that inflates to none, is as empty as Content-Length: 0 (body-parser makes it {}).
      if (error === undefined && !response.headersSent && !rawBodies.get(request)?.length) {
        refuseEmpty();
        return;
      }
      next(error);
    });
  };

  app.post('/v1/predict', readPredictBody, async (request, response) => {
    if (response.headersSent) return;
    const active = options.active();
    if (!active) {
      metrics.predictRequests.inc({ status: '503' });
      const reason = options.inactiveReason?.();
      response.status(503).json({ error: reason ? `no active model: ${reason}` : 'no active model yet' });
      return;
    }
    // Before the rows are read: a key given twice is the answer, not what its last value lacks
    // (`{"rows":[[...]],"rows":[]}` was "rows: must be a non-empty array"). The check keeps its own
    // stack, so a body nested deep costs no recursion.
    const duplicate = duplicateJsonKey(rawBodies.get(request)?.toString('utf8') ?? '');
    if (duplicate !== null) {
      metrics.predictRequests.inc({ status: '400' });
      response.status(400).json({ error: `${duplicate}: given twice in one object; send each key once` });
      return;
    }
    const parsed = parsePredictRows(request.body, active.manifest);
    if ('error' in parsed) {
      metrics.predictRequests.inc({ status: '400' });
      response.status(400).json({ error: parsed.error });
      return;
    }
    const nFeatures = active.manifest.features.length;
    const start = performance.now();
    let outputs: Awaited<ReturnType<typeof runModel>>;
    try {
      outputs = await runModel(active.lease.session, parsed.features, parsed.rows, nFeatures, expectedOutput(active.manifest, active.ref.version, 'active'));
    } catch (error) {
      // Errors count rows, as the candidate's shadow errors do, so the two sides' error ratios compare.
      options.stats.errors += parsed.rows;
      rowsCounted.add(request);
      if (error instanceof ModelOutputError) {
        // The model answered, but not what its manifest says (a width it does not declare): no answer
        // is read from it. The client is told so; the message names the model and shapes, never a stack.
        logger.error({ version: active.ref.version, err: error.message }, 'the active model gave an output its manifest does not describe');
        metrics.predictRequests.inc({ status: '500' });
        response.status(500).json({ error: error.message });
        return;
      }
      throw error;
    }
    const seconds = (performance.now() - start) / 1000;
    metrics.predictLatency.observe(seconds);
    metrics.servedLatency.observe(active.ref, seconds);
    const overflow = firstNonFiniteRow(outputs);
    if (overflow >= 0) {
      // JSON would turn NaN into null: a confident-looking non-answer. Say what happened instead.
      // The model failed these rows, as a shadow run with a non-finite output fails the candidate's.
      options.stats.errors += parsed.rows;
      metrics.predictRequests.inc({ status: '422' });
      response.status(422).json({ error: `rows[${overflow}]: the model's output is not finite (inputs far outside the range it was trained on, or a model that is broken: its benchmark on the holdout says which)` });
      return;
    }
    metrics.predictRows.inc(parsed.rows);
    options.stats.predictions += parsed.rows;
    metrics.predictRequests.inc({ status: '200' });
    const predictions = toPredictions(active.manifest, outputs);
    response.json({ model: active.ref.model, version: active.ref.version, sha256: active.ref.sha256, predictions });

    const candidate = options.candidate();
    if (candidate && options.shadowFraction > 0 && random() < options.shadowFraction && sameFeatures(active, candidate)) {
      setImmediate(() => {
        // The candidate may have been replaced, dropped or promoted since the answer: its session
        // released and its counters reset. Not run then, rather than counted against it (a run
        // started here finishes even if the session is released meanwhile: session-cache.ts).
        const stillCandidate = () => options.candidate() === candidate;
        if (!stillCandidate()) return;
        void shadowRun(candidate, parsed.features, parsed.rows, predictions, metrics, options.stats).catch((error: unknown) => {
          if (!stillCandidate()) return;
          options.stats.shadowErrors += parsed.rows;
          metrics.shadowErrors.inc({ version: candidate.ref.version }, parsed.rows);
          logger.warn({ err: (error as Error).message }, 'shadow run failed');
        });
      });
    }
  });

  app.get('/metrics', async (_request, response) => {
    response.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/healthz', (_request, response) => {
    response.json(options.health());
  });
  // A known path asked with another method is 405 with Allow, as HTTP says, not "not found".
  const allowed: Record<string, string> = { '/v1/predict': 'POST', '/metrics': 'GET, HEAD', '/healthz': 'GET, HEAD' };
  app.use((request, response) => {
    const allow = allowed[request.path];
    if (allow) response.status(405).set('Allow', allow).json({ error: `${request.method} is not allowed on ${request.path}; use ${allow.split(',')[0]}` });
    else response.status(404).json({ error: 'not found' });
  });
  const onError: ErrorRequestHandler = (error: { status?: number; type?: string; code?: unknown; message?: string }, request, response, _next) => {
    const status = typeof error.status === 'number' && error.status >= 400 && error.status < 500 ? error.status : 500;
    // Already answered (a body refused as too large, whose reader then saw the connection close),
    // or the body never came whole (the client went away, or the server answered 408 on the socket
    // itself, which counted it): nobody is left to answer, and it is no malformed request.
    if (response.headersSent || error.type === 'request.aborted') {
      response.destroy();
      return;
    }
    if (request.path === '/v1/predict') metrics.predictRequests.inc({ status: String(status) });
    if (status === 500) {
      // One whose rows were never read counts as one row.
      if (!rowsCounted.has(request)) options.stats.errors++;
      logger.error({ err: error }, 'predict request failed');
    }
    response.status(status).json({ error: requestErrorMessage(error, request.headers['content-encoding'], status) });
  };
  app.use(onError);
  return app;
}

/**
 * The one-line answer to a request body-parser refused. A compressed body (Content-Encoding gzip,
 * deflate, br) is inflated before it is read: one that does not decode is named as such, not by
 * zlib's bare "incorrect header check", and one that inflates past the limit gets the same 413
 * message as a body sent that large.
 */
function requestErrorMessage(error: { type?: string; code?: unknown; message?: string }, contentEncoding: string | undefined, status: number): string {
  if (error.type === 'entity.parse.failed') return 'the body is not valid JSON';
  if (error.type === 'entity.too.large') return `the body is larger than the ${MAX_PREDICT_BODY_BYTES}-byte limit`;
  const undecodable = undecodableBody(error, contentEncoding);
  if (undecodable) return `the body is ${undecodable}`;
  if (status === 500) return 'internal error';
  return error.message ?? 'bad request';
}

/** Compared as text, as the registry compares a model's versions: a candidate spelling "é" decomposed takes the same rows. */
function sameFeatures(a: ServingModel, b: ServingModel): boolean {
  const [ours, theirs] = [a.manifest.features, b.manifest.features];
  // As the registry compares features (columnKey): " d " and d are one column.
  return ours.length === theirs.length && ours.every((name, i) => columnKey(name) === columnKey(theirs[i]!));
}

async function shadowRun(candidate: ServingModel, features: Float32Array, rows: number, active: ReturnType<typeof toPredictions>, metrics: AgentMetrics, stats: ServingStats): Promise<void> {
  const start = performance.now();
  const outputs = await runModel(candidate.lease.session, features, rows, candidate.manifest.features.length, expectedOutput(candidate.manifest, candidate.ref.version, 'candidate'));
  // Outputs that are not numbers are a failed prediction, as /v1/predict answers them for the active model.
  if (firstNonFiniteRow(outputs) >= 0) throw new Error(`the candidate ${candidate.ref.version} gave a non-finite output`);
  metrics.shadowLatency.observe((performance.now() - start) / 1000);
  metrics.shadowRuns.inc({ version: candidate.ref.version }, rows);
  const predictions = toPredictions(candidate.manifest, outputs);
  const agreements = predictions.filter((prediction, i) => predictionsAgree(active[i]!, prediction)).length;
  metrics.shadowAgreements.inc({ version: candidate.ref.version }, agreements);
  stats.shadowRows += rows;
  stats.shadowAgreements += agreements;
}
