import { parentPort, workerData } from 'node:worker_threads';
import { initTfjs, tf } from '../../shared/model/tfjs-backend.ts';
import { errorMessage } from '../../shared/util/errors.ts';
import { trainNetwork, type TrainingSet } from './training.ts';
import type { SplitValues, TrainingRequest, TrainingThreadInput, TrainingThreadMessage } from './training-thread-protocol.ts';

/**
 * A training thread (TrainingThread): trains one network at a time on the data it was started
 * with, with the same trainModel and the same tfjs backend as the calling thread, so a network
 * trained here is the one the calling thread would have trained.
 */
const input = workerData as TrainingThreadInput;
const post = (message: TrainingThreadMessage) => parentPort!.postMessage(message);

const tensors = (split: SplitValues, width: number) => ({
  x: tf.tensor2d(split.x, [split.rows, input.inputs]),
  y: tf.tensor2d(split.y, [split.rows, width]),
});

try {
  const backend = await initTfjs();
  const width = input.task === 'classification' ? input.outputs : 1;
  const data: TrainingSet = {
    task: input.task,
    inputs: input.inputs,
    outputs: input.outputs,
    scaling: input.scaling,
    ignoredInputs: input.ignoredInputs,
    train: tensors(input.train, width),
    validation: tensors(input.validation, width),
  };
  parentPort!.on('message', (request: TrainingRequest) => {
    void train(data, request);
  });
  post({ type: 'ready', backend });
} catch (error) {
  post({ type: 'start-failed', message: errorMessage(error), stack: (error as Error)?.stack });
}

async function train(data: TrainingSet, { id, start, config }: TrainingRequest): Promise<void> {
  try {
    post({ type: 'trained', id, outcome: await trainNetwork(start, data, config) });
  } catch (error) {
    post({ type: 'failed', id, message: errorMessage(error), stack: (error as Error)?.stack });
  }
}
