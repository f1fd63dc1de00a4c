#!/usr/bin/env node
// Runs the compiled CLI (npm run build): installs the process-level handlers, runs the command,
// exits with the status it returns (see src/cli/process.ts).
import { runProcess } from '../dist/cli/process.js';

await runProcess(process.argv.slice(2));
