import type { ServerWritableStream } from '@grpc/grpc-js';
import { z } from 'zod';
import { wholeNumber } from '../../shared/util/whole-number.ts';
import { loadFleetpruneProto } from '../../shared/proto/load-proto.ts';
import { DEFAULT_LIST_PAGE, MAX_LIST_OFFSET, MAX_LIST_PAGE } from '../app/list-page.ts';
import { ServiceError } from '../app/service-error.ts';
import type { GrpcServiceBinding } from '../app/server-module.ts';
import type { Leadership } from '../rollout/leader-election.ts';
import type { RolloutService } from '../rollout/rollout-service.ts';
import { rolloutPage } from '../rollout/rollout-page.ts';
import { parseRolloutSpec } from '../rollout/rollout-spec.ts';
import { DETAIL_DEVICE_STATES, rolloutDetail, rolloutSummary, type RolloutSummary } from '../rollout/rollout-views.ts';
import type { DecisionLogEntry } from '../rollout/rollout-state.ts';
import { reasonSchema } from '../rollout/operator-text.ts';
import { MAX_SPEC_BYTES } from '../rollout/spec-document.ts';
import { checkField, pageLimit } from './check-field.ts';
import { GrpcHandlers, type GrpcDeps } from './grpc-call.ts';
import type { StalledStreams } from '../app/stalled-streams.ts';
import { ROLLOUT_ID_PATTERN } from '../../shared/util/rollout-id.ts';
import { ModelNameSchema } from '../registry/names.ts';
import { PausedSinceSchema } from '../rollout/paused-since.ts';

const RolloutId = z.string().regex(ROLLOUT_ID_PATTERN, 'must be a rollout id');
const Reason = reasonSchema();
const StepIndex = wholeNumber(0, 999_999);
/** 0 on the wire is unset: REST's default page. */
const ListLimit = pageLimit(MAX_LIST_PAGE, DEFAULT_LIST_PAGE);
const ListOffset = wholeNumber(0, MAX_LIST_OFFSET);


export function rolloutMessage(view: RolloutSummary) {
  return {
    id: view.id,
    model: view.model,
    candidate_version: view.candidateVersion,
    previous_production: view.previousProduction ?? '',
    phase: view.phase,
    terminal: view.terminal,
    step_index: view.stepIndex,
    step_count: view.stepCount,
    step_stage: view.stepStage,
    current_step: view.currentStep ?? '',
    weight: view.weight,
    devices: view.devices,
    pause_message: view.pause?.message ?? '',
    pause_reason: view.pause?.reason ?? '',
    pause_since: view.pause?.since ?? '',
    pause_until: view.pause?.until ?? '',
    outcome_status: view.outcome?.status ?? '',
    outcome_reason: view.outcome?.reason ?? '',
    outcome_at: view.outcome?.at ?? '',
    revision: String(view.revision),
    created_at: view.createdAt,
    updated_at: view.updatedAt,
  };
}

export function decisionMessage(decision: DecisionLogEntry) {
  return {
    id: decision.id,
    at: new Date(decision.at).toISOString(),
    kind: decision.kind,
    step_index: decision.stepIndex,
    verdict: decision.verdict,
    message: decision.message,
    by: decision.by ?? '',
    measurement_json: decision.measurement ? JSON.stringify(decision.measurement) : '',
  };
}

/**
 * A spec larger than REST's POST /api/rollouts takes (--max-body-bytes, and at most MAX_SPEC_BYTES)
 * is RESOURCE_EXHAUSTED, as REST answers 413: too large, not malformed.
 */
function refuseOversizedSpec(spec: string, maxBodyBytes: number): void {
  const bytes = Buffer.byteLength(spec, 'utf8');
  if (bytes > maxBodyBytes) throw new ServiceError('payload_too_large', `spec: ${bytes} bytes, larger than the ${maxBodyBytes}-byte limit (--max-body-bytes)`);
  if (bytes > MAX_SPEC_BYTES) throw new ServiceError('payload_too_large', `spec: ${bytes} bytes, larger than ${MAX_SPEC_BYTES} bytes, the most a rollout spec may be`);
}

/** The Rollouts gRPC service: the same RolloutService as the REST routes. */
export function rolloutsGrpc(service: RolloutService, leadership: Leadership, deps: GrpcDeps, maxBodyBytes: number, stalledStreams: StalledStreams): GrpcServiceBinding {
  const handlers = new GrpcHandlers(deps, 'Rollouts');
  const command = (method: string, name: 'pause' | 'resume' | 'promote' | 'abort' | 'rollback') =>
    handlers.unary(method, 'write', async (req: { id: string; reason: string; step: boolean; from_step_index?: number; paused_since: string }, principal) => {
      const id = checkField(RolloutId, req.id, 'id');
      // As REST: only abort and rollback take a reason (?reason=), only promote a step (?step=).
      const takesReason = name === 'abort' || name === 'rollback';
      if (!takesReason && req.reason !== '') throw new ServiceError('bad_request', `reason: only AbortRollout and RollbackRollout take a reason, not ${method}`);
      if (name !== 'promote' && req.step) throw new ServiceError('bad_request', `step: only PromoteRollout takes step, not ${method}`);
      if (name !== 'promote' && req.from_step_index !== undefined) throw new ServiceError('bad_request', `from_step_index: only PromoteRollout takes from_step_index, not ${method}`);
      if (name !== 'resume' && req.paused_since !== '') throw new ServiceError('bad_request', `paused_since: only ResumeRollout takes paused_since, not ${method}`);
      // Unset (an older client): resumed from whatever pause it is in, as before.
      const pausedSince = req.paused_since === '' ? undefined : checkField(PausedSinceSchema, req.paused_since, 'paused_since');
      const reason = checkField(Reason, req.reason, 'reason');
      // Unset (an older client): promoted from wherever the rollout is, as before.
      const fromStep = req.from_step_index === undefined ? undefined : checkField(StepIndex, req.from_step_index, 'from_step_index');
      const after = await service.command(id, name, principal, { full: !req.step, ...(reason ? { reason } : {}), ...(fromStep === undefined ? {} : { fromStep }), ...(pausedSince === undefined ? {} : { pausedSince }) });
      return { ...rolloutMessage(rolloutSummary(after)), warnings: after.warnings };
    });
  return {
    service: loadFleetpruneProto().Rollouts.service,
    implementation: {
      StartRollout: handlers.unary('StartRollout', 'write', async (req: { spec: string }, principal) => {
        refuseOversizedSpec(req.spec, maxBodyBytes);
        if (req.spec.trim() === '') throw new ServiceError('bad_request', 'spec: empty; send the rollout spec as YAML or JSON');
        const spec = parseRolloutSpec(req.spec, 'spec');
        const started = await service.start(spec, principal);
        return { ...rolloutMessage(rolloutSummary(started)), warnings: started.warnings };
      }),
      ListRollouts: handlers.unary('ListRollouts', 'read', async (req: { model: string; limit: number; offset: number; containing: string }) => {
        // As GET /api/rollouts (the same page): limit 0 (unset) is its default.
        const limit = checkField(ListLimit, req.limit, 'limit') || undefined;
        const offset = checkField(ListOffset, req.offset, 'offset');
        const containing = req.containing ? checkField(RolloutId, req.containing, 'containing') : undefined;
        if (containing !== undefined && offset !== 0) throw new ServiceError('bad_request', 'containing: give offset or containing, not both');
        const page = await rolloutPage(service, { ...(req.model ? { model: checkField(ModelNameSchema, req.model, 'model') } : {}), limit, offset, containing });
        return { rollouts: page.items.map(rolloutMessage), total: page.total, more: page.more, offset: page.offset };
      }),
      GetRollout: handlers.unary('GetRollout', 'read', async (req: { id: string; device_states: number }) => {
        const deviceStates = checkField(wholeNumber(0, 1_000_000), req.device_states, 'device_states') || DETAIL_DEVICE_STATES;
        const { record, decisions, rollbackRefused, rollbackWarnings } = await service.get(checkField(RolloutId, req.id, 'id'));
        return { rollout: rolloutMessage(rolloutSummary(record)), detail_json: JSON.stringify(rolloutDetail(record, decisions, deviceStates, rollbackRefused, rollbackWarnings)) };
      }),
      PauseRollout: command('PauseRollout', 'pause'),
      ResumeRollout: command('ResumeRollout', 'resume'),
      PromoteRollout: command('PromoteRollout', 'promote'),
      AbortRollout: command('AbortRollout', 'abort'),
      RollbackRollout: command('RollbackRollout', 'rollback'),
      WatchRollout: handlers.eventStream('WatchRollout', 'read', stalledStreams, (call: ServerWritableStream<{ id: string }, object>, { send, signal }) => {
        const id = checkField(RolloutId, call.request.id, 'id');
        return new Promise<void>((resolve, reject) => {
          let unsubscribe = () => {};
          service
            .watch(
              id,
              (event) => {
                if (event.type === 'decision') send({ decision: decisionMessage(event.decision) });
                else send({ state: rolloutMessage(rolloutSummary(event.record)) });
              },
              (error) => (unsubscribe(), reject(error)),
            )
            .then((stop) => {
              unsubscribe = stop;
              // A client that cancelled (or stalled) while the watch was being set up missed the event.
              if (signal.aborted) return (stop(), resolve());
              signal.addEventListener('abort', () => (stop(), resolve()), { once: true });
            }, reject);
        });
      }),
      GetRolloutLeader: handlers.unary('GetRolloutLeader', 'read', async () => {
        const status = await leadership.status();
        return { engine: status.engine, instance: status.instance, is_leader: status.isLeader, leader_since: status.leaderSince ?? '', leader: status.leader ?? '' };
      }),
    },
  };
}
