/**
 * npm run bench:scale — the rollout state machine over large fleets (1,000 to 20,000 devices).
 * Each transition is one uninterrupted stretch of CPU on the server's event loop (MQTT keepalives,
 * HTTP and ingest wait meanwhile), so it must grow linearly with the fleet. Times one rollout
 * 5% → 50% → activate everywhere → rollback, every device answering at once, median of 3 runs.
 */
import { commandChunks } from '../server/fleet/fleet-publisher.ts';
import { validateRolloutSpec } from '../server/rollout/rollout-spec.ts';
import { next, startRollout } from '../server/rollout/rollout-state-machine.ts';
import type { RolloutAction, Transition } from '../server/rollout/rollout-state.ts';
import { describeMachine, markdownTable, median, writeBenchmarkSection, writeResultsJson } from './lib/benchmarks-file.ts';
import { benchArgs } from './lib/bench-args.ts';

// It takes no flags: one given is refused before anything runs (it was ignored, and the section overwritten).
benchArgs('scale', {});

const SIZES = [1_000, 5_000, 20_000];
const RUNS = 3;
const STAGES = ['start (5% assigned)', '5% delivered', '50% delivered', 'activation delivered', 'rollback', 'rollback delivered'] as const;

const spec = validateRolloutSpec({
  model: 'iris',
  candidateVersion: '2',
  target: { matchLabels: { site: 'north' } },
  steps: [{ setWeight: 5 }, { setWeight: 50 }],
});

function fleet(size: number) {
  // UUID-like ids (36 characters), as enrolment tools often make them.
  return Array.from({ length: size }, (_, i) => ({ id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, labels: { site: 'north' }, baseline: '1' }));
}

function timed(work: () => Transition): { transition: Transition; ms: number } {
  const started = performance.now();
  const transition = work();
  return { transition, ms: performance.now() - started };
}

function answerAll(transition: Transition, at: number): Transition {
  const action = transition.actions.find((candidate): candidate is Extract<RolloutAction, { kind: 'assign' | 'revert' }> => candidate.kind === 'assign' || candidate.kind === 'revert')!;
  const ids = action.kind === 'assign' ? action.devices : action.devices.map((device) => device.deviceId);
  return next(transition.state, { type: 'actionResult', at, actionId: action.id, devices: ids.map((deviceId) => ({ deviceId, outcome: 'delivered' as const })) });
}

function runOnce(size: number): { times: number[]; stateBytes: number } {
  const devices = fleet(size);
  let at = Date.UTC(2026, 0, 1);
  const times: number[] = [];
  const step = (work: () => Transition) => {
    const { transition, ms } = timed(work);
    times.push(ms);
    at += 1000;
    return transition;
  };
  let t = step(() => startRollout('ro-scale', spec, { type: 'start', at, by: 'bench', devices, previousProduction: '1' }));
  t = step(() => answerAll(t, at));
  t = step(() => answerAll(t, at));
  t = step(() => answerAll(t, at));
  if (t.state.phase !== 'Completed') throw new Error(`expected Completed, got ${t.state.phase}`);
  const stateBytes = Buffer.byteLength(JSON.stringify(t.state));
  // As the controller sends it: every device running the candidate (here all of them, the rollout's own).
  const runningCandidate = t.state.devices.map((device) => ({ id: device.id, labels: { ...device.labels } }));
  t = step(() => next(t.state, { type: 'rollback', at, by: 'bench', runningCandidate }));
  t = step(() => answerAll(t, at));
  return { times, stateBytes };
}

const results = SIZES.map((size) => {
  const runs = Array.from({ length: RUNS }, () => runOnce(size));
  const perStage = STAGES.map((_, i) => median(runs.map((run) => run.times[i]!)));
  return {
    devices: size,
    medianMs: Object.fromEntries(STAGES.map((stage, i) => [stage, perStage[i]!])),
    worstMs: Math.max(...runs.flatMap((run) => run.times)),
    stateBytes: runs[0]!.stateBytes,
    dropCandidateMessages: commandChunks(fleet(size).map((device) => device.id)).length,
  };
});

for (const result of results) process.stdout.write(`${result.devices} devices: ${JSON.stringify(result.medianMs)}\n`);
await writeResultsJson('fleet-scale', { machine: describeMachine(), date: new Date().toISOString(), sizes: results });
const ms = (value: number) => `${value.toFixed(0)} ms`;
await writeBenchmarkSection(
  'Fleet scale (bench:scale)',
  `The rollout state machine (the pure reducer the controller runs under its per-rollout lock) over large fleets, every device answering each assignment at once; median of ${RUNS} runs per size. Each transition is one uninterrupted stretch of CPU on the server's event loop, so it has to grow linearly with the fleet: it used to scan every device once per device (quadratic), and a step took 25–85 s at 20,000 devices, longer than an MQTT keepalive. "state JSON" is the stored rollout state once completed. Machine: ${describeMachine()}. ${new Date().toISOString().slice(0, 10)}.

${markdownTable(
  ['devices', ...STAGES, 'worst transition', 'state JSON', 'drop-candidate messages'],
  results.map((result) => [
    result.devices.toLocaleString('en-US'),
    ...STAGES.map((stage) => ms(result.medianMs[stage]!)),
    ms(result.worstMs),
    `${(result.stateBytes / 1e6).toFixed(1)} MB`,
    String(result.dropCandidateMessages),
  ]),
)}

"drop-candidate messages": a rollback of a pilot that only drops the candidate names each device in a fleet command; devices accept at most 64 KiB per message, so the command goes out in this many numbered messages (36-character ids). Raw numbers: \`bench/results/fleet-scale.json\`.`,
);
process.stdout.write('wrote BENCHMARKS.md and bench/results/fleet-scale.json\n');
