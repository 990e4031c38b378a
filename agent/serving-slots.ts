import type { KeyObject } from 'node:crypto';
import { keyId } from '../shared/artifact/signing-keys.ts';
import type { ModelRef } from '../shared/protocol/payloads.ts';
import { errorMessage } from '../shared/util/errors.ts';
import type { Logger } from '../shared/util/log.ts';
import type { AgentMetrics } from './agent-metrics.ts';
import { onnxSource, type InstalledModel, type ModelStore } from './model-store.ts';
import { modelInterfaceProblem, modelProbeProblem } from './model-interface.ts';
import type { ServingModel } from './serving-model.ts';
import type { SessionCache } from './session-cache.ts';
import { sameModel, type SlotState } from './slot-state.ts';

export interface ServingSlotsOptions {
  store: ModelStore;
  publicKey: KeyObject;
  sessions: SessionCache;
  logger: Logger;
  metrics: AgentMetrics;
  /** Fraction of /v1/predict requests shadow-run on the candidate (0 = off). */
  shadowFraction: number;
  /** The agent's slot state of now. */
  state: () => SlotState;
}

/**
 * The sessions the agent serves from: the active model's, and the candidate's while shadow runs
 * are on. Loads a model's session (checked against its manifest), swaps the active one, and
 * publishes the slots as the model-info metric.
 */
export class ServingSlots {
  readonly #options: ServingSlotsOptions;
  /** The pinned server key's id: the `fleet` label the server puts on this device's series. */
  readonly #fleet: string;
  #active: ServingModel | undefined;
  #candidate: ServingModel | undefined;

  constructor(options: ServingSlotsOptions) {
    this.#options = options;
    this.#fleet = keyId(options.publicKey);
  }

  get active(): ServingModel | undefined {
    return this.#active;
  }

  get candidate(): ServingModel | undefined {
    return this.#candidate;
  }

  /** At start: serves `active` (none when it cannot be served: logged), and the candidate for shadow runs. */
  async start(active: ModelRef | null): Promise<void> {
    if (active) this.#active = await this.load(active);
    await this.refreshCandidate();
    this.publishModelInfo();
  }

  /** Lets both sessions go (the agent stops). */
  async release(): Promise<void> {
    await this.#active?.lease.release();
    await this.#candidate?.lease.release();
    this.#active = undefined;
    this.#candidate = undefined;
  }

  /** A stored model's session, or undefined (logged) when it fails verification or cannot run. */
  async load(ref: ModelRef): Promise<ServingModel | undefined> {
    const verified = await this.#options.store.loadVerified(ref.sha256, this.#options.publicKey);
    if ('failure' in verified) {
      this.#options.logger.error({ reason: verified.failure }, 'cannot serve a model that fails verification');
      return undefined;
    }
    try {
      return await this.loadFrom(ref, verified);
    } catch (error) {
      this.#options.logger.error({ version: ref.version, reason: errorMessage(error) }, 'cannot serve a model that cannot run');
      return undefined;
    }
  }

  /** The model's session; throws when onnxruntime cannot load it or it does not match its manifest. */
  async loadFrom(ref: ModelRef, model: InstalledModel): Promise<ServingModel> {
    const lease = await this.#options.sessions.acquire(onnxSource(model));
    // The declared interface, then one row run through the model: its real output width can differ from the declared one.
    const problem = modelInterfaceProblem(lease.session, model.manifest) ?? (await modelProbeProblem(lease.session, model.manifest));
    if (problem) {
      await lease.release();
      throw new Error(problem);
    }
    return { ref, manifest: model.manifest, lease };
  }

  /** Runs the state change that would make `next` serve; if it fails (nothing changed), `next`'s session is let go. */
  async releasingOnFailure(next: ServingModel, change: () => Promise<void>): Promise<void> {
    try {
      await change();
    } catch (error) {
      await next.lease.release();
      throw error;
    }
  }

  async swapActive(next: ServingModel): Promise<void> {
    const old = this.#active;
    this.#active = next;
    await old?.lease.release();
    await this.refreshCandidate();
    this.publishModelInfo();
  }

  /** Keeps a session for the candidate only while shadow runs are on. */
  async refreshCandidate(): Promise<void> {
    const { metrics } = this.#options;
    const wanted = this.#options.shadowFraction > 0 ? this.#options.state().candidate : null;
    if (sameModel(this.#candidate?.ref ?? null, wanted)) return;
    // The shadow counters are by candidate version: a new candidate starts them afresh, rather
    // than every candidate of the agent's life leaving its series behind. The shadow latency has
    // no version label: reset too, it describes the candidate of now, not a mix of all of them.
    for (const counter of [metrics.shadowRuns, metrics.shadowAgreements, metrics.shadowErrors]) counter.reset();
    metrics.shadowLatency.reset();
    const old = this.#candidate;
    this.#candidate = wanted ? await this.load(wanted) : undefined;
    await old?.lease.release();
  }

  /** The models in the slots (of the state, served or not) as the model-info metric. */
  publishModelInfo(): void {
    this.#options.metrics.modelInfo.reset();
    const { active, candidate, previous } = this.#options.state();
    for (const [slot, ref] of Object.entries({ active, candidate, previous })) if (ref) this.#options.metrics.modelInfo.set({ slot, model: ref.model, version: ref.version, fleet: this.#fleet }, 1);
    // The served model's series stays (and the one a rollback would go back to).
    this.#options.metrics.servedLatency.keepOnly([active, previous, this.#active?.ref]);
  }
}
