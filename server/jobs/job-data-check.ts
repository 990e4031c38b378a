import { parseDataset, type Task } from '../../shared/data/dataset.ts';
import { splitDataset } from '../../shared/data/split.ts';
import { describeIssues } from '../app/describe-issues.ts';
import { optionForOtherTask, PruneOptionsSchema, type PruneOptions } from '../pruning/options.ts';
import { assertLearnable } from '../pruning/standardization.ts';
import { UserError } from '../../shared/util/errors.ts';

/** What a submitted job's data set is checked with (all of it is cheap to send to a worker but the text). */
export interface JobDataCheckInput {
  csvText: string;
  /** Names the data in error messages (the request's field or the file's path). */
  source: string;
  label: string;
  task?: Task;
  /** The request's options (the task is set from the data). */
  options: Record<string, unknown> | undefined;
  /** The options the request itself gave, by name (not the schema's defaults): one the data's task ignores is refused. */
  givenOptions?: readonly string[];
  /** What errors call the options field (`body.options`, gRPC's name). */
  optionsField: string;
}

/** All a submission needs from its data set: the task and the options a job runs with. */
export interface JobDataCheck {
  task: Task;
  options: PruneOptions;
  /** The data's feature columns, in order: the network's inputs. */
  features: string[];
  /** Its classes, in the order the network's outputs take them (none for regression). */
  labels: string[];
}

/**
 * Parses the data set, validates the options against its task and splits it, so that bad data is
 * refused at submission rather than failing as a job. Every problem is a UserError: the data set
 * first, then the options, then too few rows for the splits or nothing to learn in the training
 * one (assertLearnable). Only the summary is returned.
 */
export function checkJobData(input: JobDataCheckInput): JobDataCheck {
  const dataset = parseDataset(input.csvText, { label: input.label, task: input.task }, input.source);
  const options = PruneOptionsSchema.safeParse({ ...(input.options ?? {}), task: dataset.task });
  if (!options.success) throw new UserError(describeIssues(options.error, input.optionsField));
  const misplaced = optionForOtherTask(input.givenOptions ?? [], dataset.task);
  if (misplaced) throw new UserError(`${input.optionsField}.${misplaced.key}: ${misplaced.reason}`);
  const { train } = splitDataset(dataset, options.data.seed, { validation: options.data.validationFraction, test: options.data.testFraction });
  assertLearnable(train.x, train.y, dataset.task, dataset.featureNames, dataset.labelName);
  return { task: dataset.task, options: options.data, features: dataset.featureNames, labels: dataset.task === 'classification' ? dataset.classes : [] };
}
