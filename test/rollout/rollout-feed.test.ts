import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InMemoryRolloutRepository } from '../../server/rollout/in-memory-rollout-repository.ts';
import { RolloutFeed, type RolloutFeedEvent } from '../../server/rollout/rollout-feed.ts';
import { next, startRollout } from '../../server/rollout/rollout-state-machine.ts';
import { fleetOf, specOf, T0 } from './rollout-fixtures.ts';

test('the rollout feed reads a rollout only when its revision moved: an idle watcher costs no state reads', async (t) => {
  let loads = 0;
  class CountingRepository extends InMemoryRolloutRepository {
    override load(id: string) {
      loads += 1;
      return super.load(id);
    }
  }
  const repository = new CountingRepository();
  const started = startRollout('ro-feed', specOf([{ setWeight: 50 }, { pause: {} }]), { type: 'start', at: T0, by: 'alice', devices: fleetOf(4), previousProduction: '1' });
  await repository.create({ state: started.state, pendingActions: started.actions, decisions: started.decisions });

  const feed = new RolloutFeed(repository, { pollMs: 10 });
  t.after(() => feed.close());
  const events: RolloutFeedEvent[] = [];
  const unsubscribe = feed.subscribe('ro-feed', (event) => events.push(event), (error) => assert.fail(String(error)));
  t.after(unsubscribe);
  const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  await settle(100);
  assert.equal(events.filter((event) => event.type === 'state').length, 1, 'the state once');
  assert.equal(events.filter((event) => event.type === 'decision').length, started.decisions.length, 'the history once');
  assert.equal(loads, 1, 'ten idle polls, one read');

  // A commit (new revision, new decisions) is picked up by the next poll.
  const assign = started.actions.find((action) => action.kind === 'assign')!;
  const delivered = next(started.state, { type: 'actionResult', at: T0 + 1000, actionId: assign.id, devices: (assign.kind === 'assign' ? assign.devices : []).map((deviceId) => ({ deviceId, outcome: 'delivered' as const })) });
  await repository.commit('ro-feed', { expectedRevision: 1, state: delivered.state, pendingActions: delivered.actions, executedActionIds: [assign.id], decisions: delivered.decisions });
  await settle(100);
  const states = events.filter((event): event is Extract<RolloutFeedEvent, { type: 'state' }> => event.type === 'state');
  assert.deepEqual(states.map((event) => event.record.revision), [1, 2]);
  assert.equal(events.filter((event) => event.type === 'decision').length, started.decisions.length + delivered.decisions.length);
  assert.equal(loads, 2);
});

test('a commit landing between the feed reading a rollout and reading its decisions never shows a newer decision before an older state', async (t) => {
  const started = startRollout('ro-race', specOf([{ setWeight: 50 }, { pause: {} }]), { type: 'start', at: T0, by: 'alice', devices: fleetOf(4), previousProduction: '1' });
  const assign = started.actions.find((action) => action.kind === 'assign')!;
  const delivered = next(started.state, { type: 'actionResult', at: T0 + 1000, actionId: assign.id, devices: (assign.kind === 'assign' ? assign.devices : []).map((deviceId) => ({ deviceId, outcome: 'delivered' as const })) });
  assert.ok(delivered.decisions.length > 0, 'the second revision decides something');
  // Another server commits the second revision after this one loaded the first, before it reads the decisions.
  let raced = false;
  class RacedRepository extends InMemoryRolloutRepository {
    override async decisions(id: string, options?: { afterId?: string; limit?: number }) {
      if (!raced) {
        raced = true;
        await this.commit('ro-race', { expectedRevision: 1, state: delivered.state, pendingActions: delivered.actions, executedActionIds: [assign.id], decisions: delivered.decisions });
      }
      return super.decisions(id, options);
    }
  }
  const repository = new RacedRepository();
  await repository.create({ state: started.state, pendingActions: started.actions, decisions: started.decisions });
  const feed = new RolloutFeed(repository, { pollMs: 10 });
  t.after(() => feed.close());
  const events: RolloutFeedEvent[] = [];
  t.after(feed.subscribe('ro-race', (event) => events.push(event), (error) => assert.fail(String(error))));
  await new Promise((resolve) => setTimeout(resolve, 100));

  assert.ok(raced);
  const kinds = events.map((event) => (event.type === 'state' ? `state ${event.record.revision}` : 'decision'));
  assert.deepEqual(kinds, [...Array(started.decisions.length + delivered.decisions.length).fill('decision'), 'state 2'], 'every decision, then the state they lead to');
});

test('a burst of commits, each landing between the feed reading the rollout and its decisions, still never shows a decision before an older state', async (t) => {
  const started = startRollout('ro-burst', specOf([{ setWeight: 50 }, { pause: {} }]), { type: 'start', at: T0, by: 'alice', devices: fleetOf(4), previousProduction: '1' });
  // Another server commits a revision with one decision during each of the first four decision reads.
  let raced = 0;
  class BurstRepository extends InMemoryRolloutRepository {
    override async decisions(id: string, options?: { afterId?: string; limit?: number }) {
      if (raced < 4) {
        raced += 1;
        const revision = (await this.revisionOf(id))!;
        const note = { id: `note-${raced}`, rolloutId: id, at: T0 + raced, kind: 'command' as const, stepIndex: 0, verdict: 'note', message: `note ${raced}` };
        await this.commit(id, { expectedRevision: revision, state: started.state, pendingActions: [], executedActionIds: [], decisions: [note] });
      }
      return super.decisions(id, options);
    }
  }
  const repository = new BurstRepository();
  await repository.create({ state: started.state, pendingActions: started.actions, decisions: started.decisions });
  const feed = new RolloutFeed(repository, { pollMs: 10 });
  t.after(() => feed.close());
  const events: RolloutFeedEvent[] = [];
  t.after(feed.subscribe('ro-burst', (event) => events.push(event), (error) => assert.fail(String(error))));
  await new Promise((resolve) => setTimeout(resolve, 150));

  assert.equal(raced, 4);
  // Each state comes after every decision of its own revision and before any of a later one.
  const noteRevision = (id: string) => (id.startsWith('note-') ? 1 + Number(id.slice(5)) : 1);
  let shownRevision = 0;
  let newestDecision = 0;
  for (const event of events) {
    if (event.type === 'state') {
      assert.ok(event.record.revision >= newestDecision, `the state of revision ${event.record.revision} came after a decision of revision ${newestDecision}`);
      shownRevision = event.record.revision;
    } else {
      newestDecision = Math.max(newestDecision, noteRevision(event.decision.id));
      assert.ok(noteRevision(event.decision.id) > shownRevision, `decision ${event.decision.id} came after the state of revision ${shownRevision}`);
    }
  }
  const states = events.filter((event): event is Extract<RolloutFeedEvent, { type: 'state' }> => event.type === 'state').map((event) => event.record.revision);
  assert.deepEqual(states.at(-1), 5, 'the newest state is shown');
  assert.deepEqual(events.filter((event) => event.type === 'decision').length, started.decisions.length + 4, 'every decision once');
});
