#!/usr/bin/env node
// Launcher: fleetprune is written in TypeScript and runs through tsx's loader,
// so a fresh clone needs no build step (`npm ci && npm start`).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../server/cli/main.ts');
process.exitCode = await main(process.argv);
