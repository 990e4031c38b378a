import { basename, extname } from 'node:path';
import type { Command } from 'commander';
import { parseInteger, parseNumber, parseNumberList } from '../../shared/cli/option-parsers.ts';

/** The ODF2NNA settings `fleetprune prune` and `fleetprune jobs prune` share. */
export interface PruneTuningFlags {
  task?: string;
  epsilon?: number[];
  epsilonMode?: string;
  layers?: number;
  units?: number;
  epochs?: number;
  seed?: number;
  tolerance?: number;
  lossTolerance?: number;
  l1?: number;
  l1Input?: number;
  fullSweep?: boolean;
}

export function addPruneTuningOptions(command: Command): Command {
  return command
    .option('--task <task>', 'classification or regression (inferred from the label when omitted)')
    .option('--epsilon <e[,e...]>', 'one ε, or a list to sweep (default: 0.05,0.1,0.2,0.3,0.5,0.7)', parseNumberList)
    .option('--epsilon-mode <mode>', "relative (ε × the layer's most variable unit, the default) or absolute")
    .option('--layers <n>', 'hidden layers of the general model', parseInteger)
    .option('--units <n>', 'units per hidden layer of the general model', parseInteger)
    .option('--epochs <n>', 'maximum training epochs of the general model (early stopping ends sooner)', parseInteger)
    .option('--seed <n>', 'seed for splits, initialisation and shuffling', parseInteger)
    .option('--tolerance <t>', 'allowed validation loss: accuracy points (default 0.5), or MSE percent for regression (default 2)', parseNumber)
    .option('--loss-tolerance <fraction>', 'classification: validation cross-entropy may also grow by this fraction, or 0.05 nats (default 0.5)', parseNumber)
    .option('--l1-input <lambda>', "L1 penalty on the first hidden layer's kernel while training the general model; 0 turns it off (default 1e-3)", parseNumber)
    .option('--l1 <lambda>', 'L1 penalty on the other hidden kernels; 0 turns it off (default 3e-4)', parseNumber)
    .option('--full-sweep', 'retrain every ε of the sweep, not only up to the smallest model within tolerance');
}

/** A model name from a data file's name: `data/wine.csv` → `wine`. */
export function modelNameFromFile(path: string): string {
  return basename(path, extname(path)).replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\./, '_').slice(0, 64);
}
