#!/usr/bin/env node
/**
 * The standalone edge agent: `fleetprune agent` as a program of its own. `npm run build:agent`
 * bundles it (with the shared code it uses) into dist/fleetprune-agent.mjs, which a device runs
 * with plain node: no TypeScript loader, and none of the server's or the pruning engine's modules.
 */
import { Command } from 'commander';
import { oneLineUsageErrors, runCli } from '../shared/cli/run-cli.ts';
import { FLEETPRUNE_VERSION } from '../shared/cli/version.ts';
import { AGENT_DESCRIPTION, defineAgentCommand } from './cli-command.ts';

const program = oneLineUsageErrors(defineAgentCommand(new Command('fleetprune-agent')))
  .description(AGENT_DESCRIPTION)
  .version(FLEETPRUNE_VERSION)
  .exitOverride();
process.exitCode = await runCli(program, process.argv);
